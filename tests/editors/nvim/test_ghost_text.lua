--- Typing in insert mode brings up ghost text from the real server and the tiny model; <Tab>
--- inserts exactly the suggestion, <M-Right> one word of it, <C-]> dismisses it, leaving insert
--- mode clears it, and <M-]> asks for more suggestions.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

H.start('ghost_text', { ['main.py'] = 'def add(a, b):\n    return a + b\n' })
H.edit('main.py')
H.require_capability('inlineCompletionProvider')
H.wait_ready()

-- Open a line after the last one and type, as a user would.
H.input('Godef mul(a, b):<CR>')
local ghost = H.wait('ghost text after typing', H.ghost_text)
H.eq('i', H.mode(), 'mode while ghost text shows')
H.eq('inline', ghost.pos, 'ghost text position')
H.check(ghost.text ~= '', 'ghost text is empty')
local cursor = H.lua('return vim.api.nvim_win_get_cursor(0)')
H.eq({ cursor[1] - 1, cursor[2] }, { ghost.row, ghost.col }, 'ghost text drawn at the cursor')

-- The cursor is at the end of the buffer, so accepting appends exactly the suggestion.
local before = H.buffer_text()
H.input('<Tab>')
H.wait('<Tab> to accept the suggestion', function()
  return H.buffer_text() ~= before
end)
H.eq(before .. ghost.text, H.buffer_text(), 'buffer after accepting')
H.eq('i', H.mode(), 'mode after accepting')
local lines = vim.split(before .. ghost.text, '\n', { plain = true })
H.eq({ #lines, #lines[#lines] }, H.lua('return vim.api.nvim_win_get_cursor(0)'), 'cursor after accepting')

-- Accept one word: it lands in the buffer and the rest stays on screen.
H.input('<CR>x = ')
ghost = H.wait('ghost text before accepting a word', H.ghost_text)
before = H.buffer_text()
local word = ghost.text:match('^%s*[%w_]+') or ghost.text:match('^%s*[^%w_%s]+') or ghost.text:match('^%s+')
H.input('<M-Right>')
H.wait('<M-Right> to accept a word', function()
  return H.buffer_text() ~= before
end)
H.eq(before .. word, H.buffer_text(), 'buffer after accepting a word')
if #word < #ghost.text then
  H.eq(ghost.text:sub(#word + 1), (H.ghost_text() or {}).text, 'ghost text left after accepting a word')
end

-- Dismiss, then <Tab> falls through to an ordinary tab.
H.wait('ghost text before dismissing', H.ghost_text)
before = H.buffer_text()
H.input('<C-]>')
H.wait('<C-]> to dismiss the ghost text', function()
  return H.ghost_text() == nil
end)
H.input('<Tab>')
H.wait('<Tab> without a suggestion to insert a tab', function()
  return H.buffer_text() ~= before
end)
H.eq(before .. '\t', H.buffer_text(), 'buffer after <Tab> without a suggestion')

-- A cursor move makes the old suggestion disappear at once.
ghost = H.wait('ghost text before moving the cursor', H.ghost_text)
H.input('<Left>')
H.wait('the stale ghost text to go after <Left>', function()
  local now = H.ghost_text()
  return now == nil or now.col ~= ghost.col
end)

-- <M-]> asks the server again (invoked) and shows a suggestion.
H.input('<C-]><M-]>')
H.wait('ghost text after <M-]>', H.ghost_text)

-- Leaving insert mode clears it.
H.input('<Esc>')
H.wait('ghost text to clear after <Esc>', function()
  return H.mode() == 'n' and H.ghost_text() == nil
end)

H.pass()
