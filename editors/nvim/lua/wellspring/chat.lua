--- `:WellspringChat`: asks about the selection with `wellspring.chat` and shows the streamed
--- `wellspring/chatProgress` text in a scratch split. Streams the server starts itself (the
--- Explain code action) open a split of their own.
local M = {}

local views = {} ---@type table<string, table> chatId -> { buf, client_id, request_id, streamed }
local closed = {} ---@type table<string, true> streams the user closed; later deltas are dropped
local n_chats = 0
local REQUEST_CANCELLED = -32800

local function append(view, text)
  if text == '' or not vim.api.nvim_buf_is_valid(view.buf) then
    return
  end
  local last_row = vim.api.nvim_buf_line_count(view.buf) - 1
  local last_col = #vim.api.nvim_buf_get_lines(view.buf, last_row, last_row + 1, true)[1]
  local lines = vim.split(text:gsub('\r\n', '\n'), '\n', { plain = true })
  vim.api.nvim_buf_set_text(view.buf, last_row, last_col, last_row, last_col, lines)
  local n_lines = vim.api.nvim_buf_line_count(view.buf)
  for _, win in ipairs(vim.fn.win_findbuf(view.buf)) do
    vim.api.nvim_win_set_cursor(win, { n_lines, 0 })
  end
end

--- Closes a chat split and cancels its request if the answer is still coming.
function M.close(chat_id)
  local view = views[chat_id]
  if not view then
    return
  end
  views[chat_id], closed[chat_id] = nil, true
  local client = vim.lsp.get_client_by_id(view.client_id)
  if client and view.request_id then
    client:cancel_request(view.request_id)
  end
  if vim.api.nvim_buf_is_valid(view.buf) then
    vim.api.nvim_buf_delete(view.buf, { force = true })
  end
end

local function open_view(chat_id, client_id, title)
  vim.cmd('botright new')
  local buf = vim.api.nvim_get_current_buf()
  vim.bo[buf].buftype, vim.bo[buf].bufhidden, vim.bo[buf].swapfile = 'nofile', 'wipe', false
  vim.bo[buf].filetype = 'markdown'
  pcall(vim.api.nvim_buf_set_name, buf, 'wellspring://chat/' .. chat_id)
  vim.api.nvim_buf_set_lines(buf, 0, -1, true, { '# ' .. title:gsub('\n', ' '), '', '' })
  local view = { buf = buf, client_id = client_id, chat_id = chat_id }
  views[chat_id] = view
  vim.keymap.set('n', 'q', function()
    M.close(chat_id)
  end, { buffer = buf, desc = 'Wellspring: close chat and stop the answer' })
  vim.api.nvim_create_autocmd('BufWipeout', {
    buffer = buf,
    once = true,
    callback = function()
      M.close(chat_id)
    end,
  })
  return view
end

--- The selection as an LSP range: characterwise after `v`, whole lines otherwise, empty at the
--- cursor without a range.
local function selection_range(cmd, bufnr, encoding)
  if cmd.range == 0 then
    return vim.lsp.util.make_range_params(0, encoding).range
  end
  local mark_start = vim.api.nvim_buf_get_mark(bufnr, '<')
  local mark_end = vim.api.nvim_buf_get_mark(bufnr, '>')
  if vim.fn.visualmode() == 'v' and mark_start[1] == cmd.line1 and mark_end[1] == cmd.line2 then
    return vim.lsp.util.make_given_range_params(nil, nil, bufnr, encoding).range
  end
  local last_line = vim.api.nvim_buf_get_lines(bufnr, cmd.line2 - 1, cmd.line2, true)[1]
  return {
    start = { line = cmd.line1 - 1, character = 0 },
    ['end'] = { line = cmd.line2 - 1, character = vim.str_utfindex(last_line, encoding) },
  }
end

--- Runs `:WellspringChat [question]`; without a question it asks with `vim.ui.input`.
function M.start(cmd)
  local bufnr = vim.api.nvim_get_current_buf()
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
    local args = {
      chatId = chat_id,
      textDocument = { uri = vim.uri_from_bufnr(bufnr) },
      range = range,
      question = question,
    }
    local view = open_view(chat_id, client.id, question)
    local ok, request_id = client:request('workspace/executeCommand', {
      command = 'wellspring.chat',
      arguments = { args },
    }, function(err, result)
      view.request_id, view.done = nil, true
      if err and err.code ~= REQUEST_CANCELLED then
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
  if type(params) ~= 'table' or not params.chatId or closed[params.chatId] then
    return
  end
  local view = views[params.chatId] or open_view(params.chatId, ctx.client_id, params.title or 'Wellspring')
  if params.delta and params.delta ~= '' then
    view.streamed = true
    append(view, params.delta)
  end
  if params.done then
    view.done = true
  end
end

--- The open chat views, keyed by chatId (for tests and scripts).
function M.views()
  return views
end

return M
