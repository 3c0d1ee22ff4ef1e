--- Ghost-text logic against the scripted server (fake_server.lua), where the exact suggestion is
--- known: item ranges that cover typed text or replace text after the cursor, UTF-16 positions,
--- word/line accepts of a multi-line item, cancellation of stale requests, cycling, fall-through.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

H.start('logic_ghost', { ['main.py'] = '' }, { fake = true })
H.edit('main.py')

local function script(body)
  H.lua('fake.inline = function(params) ' .. body .. ' end')
end

local function wait_ghost(expected, what)
  return H.wait(('ghost text %q (%s)'):format(expected, what), function()
    local ghost = H.ghost_text()
    return ghost and ghost.text == expected and ghost
  end, 5000)
end

local function wait_buffer(expected, what)
  local last
  vim.wait(5000, function()
    last = H.buffer_text()
    return last == expected
  end, 20)
  H.eq(expected, last, 'buffer after ' .. what)
end

local function reset(text)
  H.input('<Esc>')
  H.wait('normal mode', function()
    return H.mode() == 'n'
  end, 5000)
  H.lua('vim.api.nvim_buf_set_lines(0, 0, -1, true, vim.split(..., "\\n"))', text)
end

-- 1. The range starts at the line start and covers what was typed: only the rest is drawn, and
--    accepting replaces the range with the whole text.
script([[
  local pos = params.position
  return { { insertText = 'foo.bar(1)\nnext', range = { start = { line = pos.line, character = 0 }, ['end'] = pos } } }
]])
H.input('ifoo.ba')
wait_ghost('r(1)\nnext', 'range covering typed text')
H.input('<Tab>')
wait_buffer('foo.bar(1)\nnext', 'accept with a range covering typed text')
H.eq({ 2, 4 }, H.lua('return vim.api.nvim_win_get_cursor(0)'), 'cursor after a multi-line accept')

-- 2. The range replaces the `)` after the cursor.
reset('x = f()')
script([[
  local pos = params.position
  return { { insertText = '1, 2)', range = { start = pos, ['end'] = { line = pos.line, character = pos.character + 1 } } } }
]])
H.input('A<Left>')
wait_ghost('1, 2)', 'range replacing the closing paren')
H.input('<Tab>')
wait_buffer('x = f(1, 2)', 'accept replacing text after the cursor')
H.eq({ 1, 11 }, H.lua('return vim.api.nvim_win_get_cursor(0)'), 'cursor after a replacing accept')

-- 3. UTF-16 positions: "é" is one UTF-16 unit but two bytes.
reset('')
script([[
  local pos = params.position
  return { { insertText = '= foo', range = { start = { line = pos.line, character = 2 }, ['end'] = pos } } }
]])
H.input('ié = f')
wait_ghost('oo', 'UTF-16 range start')
H.input('<Tab>')
wait_buffer('é = foo', 'accept with a UTF-16 range')

-- 4. Word and line accepts of a multi-line item, then the last line accepts the whole range.
reset('')
script([[
  local pos = params.position
  if pos.character ~= 0 or pos.line ~= 0 then return {} end
  return { { insertText = 'alpha beta\ngamma', range = { start = pos, ['end'] = pos } } }
]])
H.input('i')
wait_ghost('alpha beta\ngamma', 'multi-line item on entering insert mode')
H.input('<M-Right>')
wait_buffer('alpha', 'accept word')
wait_ghost(' beta\ngamma', 'rest after a word')
H.input('<M-C-Right>')
wait_buffer('alpha beta', 'accept line')
wait_ghost('\ngamma', 'rest after a line')
H.input('<M-C-Right>')
wait_buffer('alpha beta\ngamma', 'accept the last line')
H.eq({ 2, 5 }, H.lua('return vim.api.nvim_win_get_cursor(0)'), 'cursor after the last partial accept')

-- 5. Typing while a request is in flight cancels it; only the newest answer is drawn.
reset('')
script([[ return { { insertText = 'answer' .. params.position.character } } ]])
H.lua('fake.delay_ms = 300; fake.log = {}')
H.input('i1')
H.wait('the first request', function()
  return H.lua('for _, m in ipairs(fake.log) do if m.method == "textDocument/inlineCompletion" then return true end end')
end, 5000)
H.input('2')
wait_ghost('answer2', 'newest answer')
local cancelled = H.lua([[
  for _, m in ipairs(fake.log) do if m.method == '$/cancelRequest' then return true end end
  return false
]])
H.check(cancelled, 'typing did not cancel the request in flight')
H.lua('fake.delay_ms = 10')

-- 6. <M-]> asks with triggerKind Invoked and cycles through the items; <M-[> goes back.
reset('')
script([[
  if params.context.triggerKind == 1 then
    return { { insertText = 'one' }, { insertText = 'two' }, { insertText = 'three' } }
  end
  return { { insertText = 'one' } }
]])
H.input('iz')
wait_ghost('one', 'automatic item')
H.input('<M-]>')
wait_ghost('two', 'second item after <M-]>')
H.input('<M-]>')
wait_ghost('three', 'third item after <M-]>')
H.input('<M-]>')
wait_ghost('one', 'wrap around')
H.input('<M-[>')
wait_ghost('three', 'previous item after <M-[>')

-- 7. Without a suggestion, <Tab> is an ordinary tab.
reset('')
script('return {}')
H.input('ia')
H.wait('the empty answer', function()
  return H.lua('return #fake.log > 0 and fake.log[#fake.log].method == "textDocument/inlineCompletion"')
end, 5000)
H.input('<Tab>')
wait_buffer('a\t', 'tab without suggestion')

H.pass()
