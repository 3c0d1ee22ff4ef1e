--- A scripted, in-process language server for the plugin's own logic tests (ranges, partial
--- accepts, stale answers, cancellation, streams the server starts). It answers with exactly the
--- text a test asks for, which the tiny random model cannot do; the end-to-end tests use the real
--- server. Tests script it through `_G.fake` in the Neovim under test:
---   fake.inline(params) -> items       what `textDocument/inlineCompletion` answers
---   fake.log                            every request and notification received, in order
---   fake.chat_deltas                    what `wellspring.chat` streams
---   fake.download_error                 the error `wellspring.downloadModel` answers, if any
local M = {}

_G.fake = {
  log = {},
  delay_ms = 10,
  chat_deltas = { 'Hello', ' from', ' the\nfake ', 'server.' },
  inline = function(params)
    return { { insertText = 'ghost()' } }
  end,
}

local function reply_later(callback, err, result, delay_ms)
  vim.defer_fn(function()
    callback(err, result)
  end, delay_ms or _G.fake.delay_ms)
end

local function stream_chat(dispatchers, args, state, callback)
  local text = {}
  for idx, delta in ipairs(_G.fake.chat_deltas) do
    vim.defer_fn(function()
      if state.cancelled then
        return
      end
      text[#text + 1] = delta
      dispatchers.notification('wellspring/chatProgress', {
        chatId = args.chatId,
        title = idx == 1 and 'Fake chat' or nil,
        delta = delta,
        done = idx == #_G.fake.chat_deltas,
      })
      if idx == #_G.fake.chat_deltas then
        callback(nil, { chatId = args.chatId, text = table.concat(text) })
      end
    end, idx * 30)
  end
end

--- Starts a server that streams a chat of its own choosing (like the Explain action does).
function M.server_stream(chat_id)
  local dispatchers = assert(M.dispatchers, 'fake server not started')
  for idx, delta in ipairs({ 'Server', ' started', ' this.' }) do
    dispatchers.notification('wellspring/chatProgress', {
      chatId = chat_id,
      title = idx == 1 and 'Explain' or nil,
      delta = delta,
      done = idx == 3,
    })
  end
end

--- The `cmd` function for `vim.lsp.config`.
function M.cmd(dispatchers)
  M.dispatchers = dispatchers
  local n_requests, pending, closing = 0, {}, false
  local handlers = {
    initialize = function()
      return {
        capabilities = {
          positionEncoding = 'utf-16',
          textDocumentSync = 1,
          inlineCompletionProvider = true,
          codeActionProvider = { resolveProvider = true },
          executeCommandProvider = { commands = { 'wellspring.chat', 'wellspring.instruct', 'wellspring.downloadModel' } },
        },
      }
    end,
    shutdown = function() end,
    ['textDocument/inlineCompletion'] = function(params)
      return { items = _G.fake.inline(params) }
    end,
    ['textDocument/codeAction'] = function(params)
      return {
        { title = 'Fake: uppercase', kind = 'refactor.rewrite', data = { uri = params.textDocument.uri, range = params.range } },
        {
          title = 'Wellspring: Edit with instruction…',
          kind = 'refactor.rewrite',
          command = {
            title = 'Edit with instruction…',
            command = 'wellspring.instructPrompt',
            arguments = { { textDocument = params.textDocument, range = params.range } },
          },
        },
      }
    end,
    ['codeAction/resolve'] = function(action)
      -- Neovim resolves every action that lacks an edit, the client-side command one included.
      if not action.data then
        return action
      end
      local range = action.data.range
      action.edit = {
        changes = { [action.data.uri] = { { range = range, newText = 'UPPER' } } },
      }
      return action
    end,
  }

  local client = {}
  function client.request(method, params, callback, notify_reply_callback)
    n_requests = n_requests + 1
    local id = n_requests
    table.insert(_G.fake.log, { method = method, params = params, id = id })
    local state = {}
    pending[id] = { state = state, callback = callback }
    local function done(err, result)
      if pending[id] then
        pending[id] = nil
        callback(err, result)
        if notify_reply_callback then
          notify_reply_callback(id)
        end
      end
    end
    if method == 'workspace/executeCommand' and params.command == 'wellspring.chat' then
      stream_chat(dispatchers, params.arguments[1], state, done)
    elseif method == 'workspace/executeCommand' and params.command == 'wellspring.instruct' then
      local args = params.arguments[1]
      local edit = { changes = { [args.textDocument.uri] = { { range = args.range, newText = args.instruction } } } }
      dispatchers.server_request('workspace/applyEdit', { edit = edit })
      reply_later(done, nil, edit)
    elseif method == 'workspace/executeCommand' and params.command == 'wellspring.downloadModel' then
      reply_later(done, _G.fake.download_error, nil)
    elseif handlers[method] then
      reply_later(done, nil, handlers[method](params))
    else
      reply_later(done, { code = -32601, message = 'method not found: ' .. method })
    end
    return true, id
  end
  function client.notify(method, params)
    table.insert(_G.fake.log, { method = method, params = params })
    if method == '$/cancelRequest' and pending[params.id] then
      local request = pending[params.id]
      request.state.cancelled = true
      pending[params.id] = nil
      request.callback({ code = -32800, message = 'request cancelled' }, nil)
    elseif method == 'exit' then
      closing = true
    end
    return true
  end
  function client.is_closing()
    return closing
  end
  function client.terminate()
    closing = true
  end
  return client
end

return M
