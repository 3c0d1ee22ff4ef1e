--- Ghost text for Neovim 0.11, which lacks `vim.lsp.inline_completion`: asks the server for
--- `textDocument/inlineCompletion` on each edit or cursor move in insert mode and draws the
--- answer with extmarks. Debouncing and reuse are the server's job, so a new request simply
--- cancels the one in flight.
local M = {}
local api = vim.api
local ns = api.nvim_create_namespace('wellspring.ghost')
local states = {} ---@type table<integer, table> bufnr -> { client_id, request_id, items, index, shown }
api.nvim_set_hl(0, 'WellspringGhost', { link = 'Comment', default = true })

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function byte_col(bufnr, position, encoding)
  local line = api.nvim_buf_get_lines(bufnr, position.line, position.line + 1, false)[1] or ''
  local ok, col = pcall(vim.str_byteindex, line, encoding, position.character, false)
  return ok and math.min(col, #line) or #line
end

--- Hides the suggestion; with `cancel`, also forgets it and cancels the request in flight.
local function clear(state, cancel)
  api.nvim_buf_clear_namespace(state.bufnr, ns, 0, -1)
  state.shown = nil
  local client = vim.lsp.get_client_by_id(state.client_id)
  if cancel then
    if client and state.request_id then
      client:cancel_request(state.request_id)
    end
    state.request_id, state.items = nil, {}
  end
end

--- What the current item adds at the cursor: its text minus what is already typed in its range.
local function rest_of(state)
  local item, row, col = state.items[state.index], cursor()
  if not item or item.range[1] > row or (item.range[1] == row and item.range[2] > col) then
    return nil
  end
  local typed = table.concat(api.nvim_buf_get_text(state.bufnr, item.range[1], item.range[2], row, col, {}), '\n')
  if item.text:sub(1, #typed) == typed and #item.text > #typed then
    return item.text:sub(#typed + 1)
  end
end

local function show(state)
  clear(state)
  local rest = rest_of(state)
  if not rest then
    return false
  end
  local lines, virt_lines = vim.split(rest, '\n', { plain = true }), {}
  for idx = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[idx], 'WellspringGhost' } }
  end
  local row, col = cursor()
  api.nvim_buf_set_extmark(state.bufnr, ns, row, col, {
    virt_text = { { lines[1], 'WellspringGhost' } },
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
  })
  state.shown = { tick = vim.b[state.bufnr].changedtick, row = row, col = col }
  return true
end

--- Turns an answer into items with byte ranges, unless the text or cursor moved meanwhile.
local function on_result(state, client, err, result, asked, index)
  -- Cancelled (-32800), content modified and server cancelled (-32801/-32802) are routine.
  if err and not (err.code and err.code <= -32800 and err.code >= -32802) then
    vim.notify_once('Wellspring: inline completion failed: ' .. err.message, vim.log.levels.WARN)
  end
  local row, col = cursor()
  if err or not result or vim.b[state.bufnr].changedtick ~= asked[1] or row ~= asked[2] or col ~= asked[3] then
    return
  end
  local items = {}
  for _, raw in ipairs(result.items or result) do
    local text = type(raw.insertText) == 'table' and raw.insertText.value or raw.insertText
    local first, last = raw.range and raw.range.start, raw.range and raw.range['end']
    local range = not first and { row, col, row, col }
      or { first.line, byte_col(state.bufnr, first, client.offset_encoding), last.line, byte_col(state.bufnr, last, client.offset_encoding) }
    if type(text) == 'string' and text ~= '' then
      items[#items + 1] = { text = text, range = range }
    end
  end
  state.items, state.index = items, math.max(1, math.min(index, #items))
  show(state)
end

--- Asks for suggestions at the cursor (triggerKind 1 = invoked, 2 = automatic) and shows item `index`.
local function request(state, trigger_kind, index)
  clear(state, true)
  local client = vim.lsp.get_client_by_id(state.client_id)
  if not client or api.nvim_get_current_buf() ~= state.bufnr then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = trigger_kind }
  local asked, request_id = { vim.b[state.bufnr].changedtick, cursor() }, nil
  local ok, id = client:request('textDocument/inlineCompletion', params, function(err, result)
    state.request_id = state.request_id ~= request_id and state.request_id or nil
    on_result(state, client, err, result, asked, index)
  end, state.bufnr)
  request_id = ok and id or nil
  state.request_id = request_id
end

--- InsertEnter, TextChangedI and CursorMovedI: one keystroke fires several, so one request is
--- scheduled for all of them.
local function on_edit(state)
  local shown, row, col = state.shown, cursor()
  if shown and shown.tick == vim.b[state.bufnr].changedtick and shown.row == row and shown.col == col then
    return -- Our own partial accept: the rest of the suggestion is already drawn.
  end
  clear(state, true)
  if state.scheduled or vim.fn.pumvisible() == 1 then
    return
  end
  state.scheduled = true
  vim.schedule(function()
    state.scheduled = false
    if api.nvim_get_mode().mode:sub(1, 1) == 'i' then
      request(state, 2, 1)
    end
  end)
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
  local group = api.nvim_create_augroup('wellspring.ghost.' .. bufnr, { clear = true })
  local function on(events, callback)
    api.nvim_create_autocmd(events, { group = group, buffer = bufnr, callback = callback })
  end
  on({ 'InsertEnter', 'TextChangedI', 'CursorMovedI' }, function()
    on_edit(state)
  end)
  on({ 'InsertLeave', 'BufLeave' }, function()
    clear(state, true)
  end)
  on('LspDetach', function(args)
    if args.data.client_id == state.client_id then
      clear(state, true)
      states[bufnr] = nil
      api.nvim_del_augroup_by_id(group)
    end
  end)
end

local function shown_state(bufnr)
  local state = states[bufnr or api.nvim_get_current_buf()]
  return state and state.shown and state or nil
end

--- The text the visible suggestion would insert at the cursor, or nil.
function M.visible(bufnr)
  local state = shown_state(bufnr)
  return state and rest_of(state)
end

--- Inserts all, or the next word or line, of the visible suggestion. A full accept replaces the
--- item's range with its text exactly; a partial one inserts at the cursor and keeps the rest.
---@param how? 'all'|'word'|'line'
---@return boolean accepted
function M.accept(bufnr, how)
  local state = shown_state(bufnr)
  local rest = state and rest_of(state)
  if not rest then
    return false
  end
  local piece = how == 'word' and (rest:match('^%s*[%w_]+') or rest:match('^%s*[^%w_%s]+') or rest:match('^%s+'))
    or how == 'line' and rest:match('^\n?[^\n]*')
    or rest
  local item, row, col = state.items[state.index], cursor()
  if piece == rest then
    clear(state, true)
    row, col = item.range[1], item.range[2]
    api.nvim_buf_set_text(state.bufnr, row, col, item.range[3], item.range[4], vim.split(item.text, '\n', { plain = true }))
    piece = item.text
  else
    -- An extmark follows the range's end through the insertion, so the item stays exact.
    local end_mark = api.nvim_buf_set_extmark(state.bufnr, ns, item.range[3], item.range[4], {})
    api.nvim_buf_set_text(state.bufnr, row, col, row, col, vim.split(piece, '\n', { plain = true }))
    item.range[3], item.range[4] = unpack(api.nvim_buf_get_extmark_by_id(state.bufnr, ns, end_mark, {}))
    state.items, state.index = { item }, 1
  end
  local lines = vim.split(piece, '\n', { plain = true })
  api.nvim_win_set_cursor(0, { row + #lines, (#lines == 1 and col or 0) + #lines[#lines] })
  if piece ~= item.text then
    show(state)
  end
  return true
end

function M.accept_word(bufnr)
  return M.accept(bufnr, 'word')
end

function M.accept_line(bufnr)
  return M.accept(bufnr, 'line')
end

function M.dismiss(bufnr)
  local state = shown_state(bufnr)
  return state ~= nil and (clear(state, true) or true)
end

--- Shows the next (delta 1) or previous (-1) item; with one at hand, asks the server for several.
local function cycle(bufnr, delta)
  local state = states[bufnr or api.nvim_get_current_buf()]
  if state and state.shown and #state.items > 1 then
    state.index = (state.index - 1 + delta) % #state.items + 1
    return show(state)
  elseif state then
    request(state, 1, delta > 0 and 2 or math.huge)
  end
  return state ~= nil
end

function M.next(bufnr)
  return cycle(bufnr, 1)
end

function M.prev(bufnr)
  return cycle(bufnr, -1)
end

M.namespace = ns
return M
