--- `:WellspringChat`: asks about the selection with `wellspring.chat` and shows the streamed
--- `wellspring/chatProgress` text in a scratch split. Streams the server starts itself (the
--- Explain code action) open a split of their own.
local M = {}
local api = vim.api
local views = {} ---@type table<string, table> chatId -> { buf, client_id, request_id, streamed, done }
local closed = {} ---@type table<string, true> streams the user closed; later deltas are dropped
local n_chats = 0

local function append(view, text)
  if text == '' or not api.nvim_buf_is_valid(view.buf) then
    return
  end
  local last_row = api.nvim_buf_line_count(view.buf) - 1
  local last_col = #api.nvim_buf_get_lines(view.buf, last_row, last_row + 1, true)[1]
  api.nvim_buf_set_text(view.buf, last_row, last_col, last_row, last_col, vim.split(text, '\r?\n'))
  for _, win in ipairs(vim.fn.win_findbuf(view.buf)) do
    api.nvim_win_set_cursor(win, { api.nvim_buf_line_count(view.buf), 0 })
  end
end

--- Closes a chat split and cancels its request if the answer is still coming.
function M.close(chat_id)
  local view = views[chat_id]
  views[chat_id], closed[chat_id] = nil, true
  local client = view and vim.lsp.get_client_by_id(view.client_id)
  if client and view.request_id then
    client:cancel_request(view.request_id)
  end
  if view and api.nvim_buf_is_valid(view.buf) then
    api.nvim_buf_delete(view.buf, { force = true })
  end
end

local function open_view(chat_id, client_id, title)
  vim.cmd('botright new')
  local buf = api.nvim_get_current_buf()
  vim.bo[buf].buftype, vim.bo[buf].bufhidden, vim.bo[buf].swapfile = 'nofile', 'wipe', false
  vim.bo[buf].filetype = 'markdown'
  pcall(api.nvim_buf_set_name, buf, 'wellspring://chat/' .. chat_id)
  api.nvim_buf_set_lines(buf, 0, -1, true, { '# ' .. title:gsub('\n', ' '), '', '' })
  local close = function()
    M.close(chat_id)
  end
  vim.keymap.set('n', 'q', close, { buffer = buf, desc = 'Wellspring: close chat and stop the answer' })
  api.nvim_create_autocmd('BufWipeout', { buffer = buf, once = true, callback = close })
  views[chat_id] = { buf = buf, client_id = client_id }
  return views[chat_id]
end

--- The selection as an LSP range: characterwise after `v`, whole lines for other ranges, empty
--- at the cursor without one.
local function selection_range(cmd, bufnr, encoding)
  local util = vim.lsp.util
  if cmd.range == 0 then
    return util.make_range_params(0, encoding).range
  elseif vim.fn.visualmode() == 'v' and vim.fn.line("'<") == cmd.line1 and vim.fn.line("'>") == cmd.line2 then
    return util.make_given_range_params(nil, nil, bufnr, encoding).range
  end
  local last_line = api.nvim_buf_get_lines(bufnr, cmd.line2 - 1, cmd.line2, true)[1]
  return {
    start = { line = cmd.line1 - 1, character = 0 },
    ['end'] = { line = cmd.line2 - 1, character = vim.str_utfindex(last_line, encoding) },
  }
end

--- Runs `:WellspringChat [question]`; without a question it asks with `vim.ui.input`.
function M.start(cmd)
  local bufnr = api.nvim_get_current_buf()
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = 'wellspring' })[1]
  if not client then
    return vim.notify('Wellspring: no server attached to this buffer', vim.log.levels.ERROR)
  end
  local range = selection_range(cmd, bufnr, client.offset_encoding)
  local function ask(question)
    if not question or vim.trim(question) == '' then
      return
    end
    n_chats = n_chats + 1
    local chat_id = ('nvim-%d-%d'):format(vim.fn.getpid(), n_chats)
    local view = open_view(chat_id, client.id, question)
    local args = { chatId = chat_id, textDocument = { uri = vim.uri_from_bufnr(bufnr) }, range = range, question = question }
    local ok, request_id = client:request('workspace/executeCommand', { command = 'wellspring.chat', arguments = { args } }, function(err, result)
      view.request_id, view.done = nil, true
      if err and err.code ~= -32800 then -- -32800: cancelled by `q`.
        append(view, '\n[error] ' .. err.message)
      elseif result and not view.streamed then
        append(view, result.text or '')
      end
    end, bufnr)
    view.request_id = ok and request_id or nil
  end
  if cmd.args ~= '' then
    ask(cmd.args)
  else
    vim.ui.input({ prompt = 'Ask Wellspring: ' }, ask)
  end
end

--- Handler for `wellspring/chatProgress`.
function M.on_progress(_, params, ctx)
  if type(params) ~= 'table' or type(params.chatId) ~= 'string' or closed[params.chatId] then
    return
  end
  local view = views[params.chatId] or open_view(params.chatId, ctx.client_id, params.title or 'Wellspring')
  view.streamed = view.streamed or (params.delta or '') ~= ''
  view.done = view.done or params.done
  if type(params.notice) == 'string' then
    append(view, '[' .. params.notice .. ']\n\n')
  end
  append(view, params.delta or '')
end

--- The open chat views, keyed by chatId (for tests and scripts).
function M.views()
  return views
end

return M
