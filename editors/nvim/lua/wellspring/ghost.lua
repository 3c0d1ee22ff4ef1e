--- Ghost text for Neovim 0.11, which lacks `vim.lsp.inline_completion`: asks the server for
--- `textDocument/inlineCompletion` on every edit or cursor move in insert mode and draws the
--- answer with extmarks. Debouncing and reuse are the server's job, so a new request simply
--- cancels the one in flight.
local M = {}

local ns = vim.api.nvim_create_namespace('wellspring.ghost')
local TRIGGER_INVOKED, TRIGGER_AUTOMATIC = 1, 2
local states = {} ---@type table<integer, table>

vim.api.nvim_set_hl(0, 'WellspringGhost', { link = 'Comment', default = true })

local function cursor()
  local pos = vim.api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

--- Byte column of an LSP position, clamped to the line.
local function byte_col(bufnr, position, encoding)
  local line = vim.api.nvim_buf_get_lines(bufnr, position.line, position.line + 1, false)[1] or ''
  local ok, col = pcall(vim.str_byteindex, line, encoding, position.character, false)
  return ok and math.min(col, #line) or #line
end

local function clear(state)
  vim.api.nvim_buf_clear_namespace(state.bufnr, ns, 0, -1)
  state.shown = nil
end

local function cancel(state)
  local client = vim.lsp.get_client_by_id(state.client_id)
  if client and state.request_id then
    client:cancel_request(state.request_id)
  end
  state.request_id = nil
end

--- What the current item adds at the cursor: its text minus what is already typed in its range.
local function rest_of(state)
  local item = state.items[state.index]
  if not item then
    return nil
  end
  local row, col = cursor()
  local start_row, start_col = item.range[1], item.range[2]
  if start_row > row or (start_row == row and start_col > col) then
    return nil
  end
  local typed = table.concat(vim.api.nvim_buf_get_text(state.bufnr, start_row, start_col, row, col, {}), '\n')
  if item.text:sub(1, #typed) ~= typed or #item.text == #typed then
    return nil
  end
  return item.text:sub(#typed + 1)
end

local function show(state)
  clear(state)
  local rest = rest_of(state)
  if not rest then
    return false
  end
  local lines = vim.split(rest, '\n', { plain = true })
  local virt_lines = {}
  for idx = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[idx], 'WellspringGhost' } }
  end
  local row, col = cursor()
  vim.api.nvim_buf_set_extmark(state.bufnr, ns, row, col, {
    virt_text = { { lines[1], 'WellspringGhost' } },
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
  })
  state.shown = { tick = vim.b[state.bufnr].changedtick, row = row, col = col }
  return true
end

local function on_result(state, err, result, asked, index)
  -- Cancelled (-32800), content modified and server cancelled (-32801/-32802) are routine.
  if err and not (err.code and err.code <= -32800 and err.code >= -32802) then
    vim.notify_once('Wellspring: inline completion failed: ' .. err.message, vim.log.levels.WARN)
  end
  if err or not result then
    return
  end
  local row, col = cursor()
  if vim.b[state.bufnr].changedtick ~= asked.tick or row ~= asked.row or col ~= asked.col then
    return
  end
  local client = vim.lsp.get_client_by_id(state.client_id)
  local items = {}
  for _, raw in ipairs(result.items or result) do
    local text = type(raw.insertText) == 'table' and raw.insertText.value or raw.insertText
    local range = { row, col, row, col }
    if raw.range and client then
      local first, last = raw.range.start, raw.range['end']
      range = {
        first.line,
        byte_col(state.bufnr, first, client.offset_encoding),
        last.line,
        byte_col(state.bufnr, last, client.offset_encoding),
      }
    end
    if type(text) == 'string' and text ~= '' then
      items[#items + 1] = { text = text, range = range }
    end
  end
  state.items, state.index = items, math.max(1, math.min(index, #items))
  show(state)
end

local function request(state, trigger_kind, index)
  cancel(state)
  local client = vim.lsp.get_client_by_id(state.client_id)
  if not client or vim.api.nvim_get_current_buf() ~= state.bufnr then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = trigger_kind }
  local row, col = cursor()
  local asked = { tick = vim.b[state.bufnr].changedtick, row = row, col = col }
  local request_id
  local ok, id = client:request('textDocument/inlineCompletion', params, function(err, result)
    if state.request_id == request_id then
      state.request_id = nil
    end
    on_result(state, err, result, asked, index)
  end, state.bufnr)
  request_id = ok and id or nil
  state.request_id = request_id
end

--- TextChangedI and CursorMovedI both fire for one keystroke; this sends one request for both.
--- InsertEnter asks too, so an empty line gets a suggestion before the first key.
local function on_edit(state)
  local shown, row, col = state.shown, cursor()
  if shown and shown.tick == vim.b[state.bufnr].changedtick and shown.row == row and shown.col == col then
    return -- Our own partial accept: the rest of the suggestion is already drawn.
  end
  clear(state)
  state.items = {}
  if state.scheduled or vim.fn.pumvisible() == 1 then
    return
  end
  state.scheduled = true
  vim.schedule(function()
    state.scheduled = false
    if vim.api.nvim_get_mode().mode:sub(1, 1) == 'i' then
      request(state, TRIGGER_AUTOMATIC, 1)
    end
  end)
end

local function reset(state)
  cancel(state)
  clear(state)
  state.items = {}
end

---@param client vim.lsp.Client
---@param bufnr integer
function M.attach(client, bufnr)
  if states[bufnr] then
    states[bufnr].client_id = client.id
    return
  end
  local state = { bufnr = bufnr, client_id = client.id, items = {}, index = 1 }
  states[bufnr] = state
  local group = vim.api.nvim_create_augroup('wellspring.ghost.' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      on_edit(state)
    end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      reset(state)
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = group,
    buffer = bufnr,
    callback = function(args)
      if args.data.client_id == state.client_id then
        reset(state)
        states[bufnr] = nil
        vim.api.nvim_del_augroup_by_id(group)
      end
    end,
  })
end

local function state_of(bufnr)
  local state = states[bufnr or vim.api.nvim_get_current_buf()]
  return state and state.shown and state or nil
end

--- The text the visible suggestion would insert at the cursor, or nil.
---@return string?
function M.visible(bufnr)
  local state = state_of(bufnr)
  return state and rest_of(state)
end

--- Inserts all, or the next word or line of, the visible suggestion. A full accept replaces the
--- item's range with its text exactly; a partial one inserts at the cursor and keeps the rest.
---@param how? 'all'|'word'|'line'
---@return boolean accepted
function M.accept(bufnr, how)
  local state = state_of(bufnr)
  local rest = state and rest_of(state)
  if not rest then
    return false
  end
  local piece = rest
  if how == 'word' then
    piece = rest:match('^%s*[%w_]+') or rest:match('^%s*[^%w_%s]+') or rest:match('^%s+')
  elseif how == 'line' then
    piece = rest:match('^\n?[^\n]*')
  end
  local item = state.items[state.index]
  local row, col = cursor()
  if piece == rest then
    local start_row, start_col, end_row, end_col = unpack(item.range)
    local lines = vim.split(item.text, '\n', { plain = true })
    reset(state)
    vim.api.nvim_buf_set_text(state.bufnr, start_row, start_col, end_row, end_col, lines)
    local last_col = (#lines == 1 and start_col or 0) + #lines[#lines]
    vim.api.nvim_win_set_cursor(0, { start_row + #lines, last_col })
    return true
  end
  -- An extmark follows the range's end through the insertion, so the item stays exact.
  local end_mark = vim.api.nvim_buf_set_extmark(state.bufnr, ns, item.range[3], item.range[4], {})
  local lines = vim.split(piece, '\n', { plain = true })
  vim.api.nvim_buf_set_text(state.bufnr, row, col, row, col, lines)
  local end_pos = vim.api.nvim_buf_get_extmark_by_id(state.bufnr, ns, end_mark, {})
  item.range[3], item.range[4] = end_pos[1], end_pos[2]
  local last_col = (#lines == 1 and col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { row + #lines, last_col })
  state.items = { item }
  state.index = 1
  show(state)
  return true
end

function M.accept_word(bufnr)
  return M.accept(bufnr, 'word')
end

function M.accept_line(bufnr)
  return M.accept(bufnr, 'line')
end

---@return boolean dismissed
function M.dismiss(bufnr)
  local state = state_of(bufnr)
  if state then
    reset(state)
  end
  return state ~= nil
end

--- Shows the next (or previous) item; with only one at hand it asks the server for several.
local function cycle(bufnr, delta)
  local state = states[bufnr or vim.api.nvim_get_current_buf()]
  if not state then
    return false
  end
  if #state.items > 1 and state.shown then
    state.index = (state.index - 1 + delta) % #state.items + 1
    return show(state)
  end
  request(state, TRIGGER_INVOKED, delta > 0 and 2 or math.huge)
  return true
end

function M.next(bufnr)
  return cycle(bufnr, 1)
end

function M.prev(bufnr)
  return cycle(bufnr, -1)
end

M.namespace = ns
return M
