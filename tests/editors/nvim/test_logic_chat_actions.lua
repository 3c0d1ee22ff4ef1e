--- Chat, code-action and status plumbing against the scripted server (fake_server.lua): the
--- streamed split, `q` cancelling an unfinished answer, streams the server starts itself, a
--- resolved code action's edit, the client-side `wellspring.instructPrompt` command, and the
--- status-line component fed by `wellspring/status`.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

H.start('logic_chat_actions', { ['main.py'] = 'def add(a, b):\n    return a + b\n' }, { fake = true })
H.edit('main.py')
local source_buf = H.lua('return vim.api.nvim_get_current_buf()')

local function chat_buffers()
  return H.lua([[
    local found = {}
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_get_name(buf):match('^wellspring://chat/') and vim.api.nvim_buf_is_loaded(buf) then
        found[#found + 1] = buf
      end
    end
    return found
  ]])
end

-- 1. A linewise visual selection, then :WellspringChat with the question on the command line.
H.input('Vj:WellspringChat what does it do?<CR>')
local chat_buf = H.wait('a chat split', function()
  return chat_buffers()[1]
end, 5000)
H.wait('the streamed answer', function()
  return H.buffer_text(chat_buf) == '# what does it do?\n\nHello from the\nfake server.'
end, 5000)
local request = H.lua([[
  for _, m in ipairs(fake.log) do
    if m.method == 'workspace/executeCommand' then return m.params end
  end
]])
H.eq('wellspring.chat', request.command, 'chat command')
local args = request.arguments[1]
H.eq('what does it do?', args.question, 'chat question')
H.eq({ start = { line = 0, character = 0 }, ['end'] = { line = 1, character = 16 } }, args.range, 'chat range')
H.check(args.textDocument.uri:match('main%.py$'), 'chat textDocument: ' .. vim.inspect(args.textDocument))
H.input('q')
H.wait('q to close the chat split', function()
  return #chat_buffers() == 0 and H.lua('return #vim.api.nvim_list_wins()') == 1
end, 5000)

-- 2. `q` while the answer is still streaming cancels the request.
H.lua('fake.log = {}; fake.chat_deltas = { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l" }')
H.input(':WellspringChat slow<CR>')
H.wait('the first delta', function()
  local buf = chat_buffers()[1]
  return buf and H.buffer_text(buf):match('a$')
end, 5000)
H.input('q')
H.wait('$/cancelRequest after q', function()
  return H.lua([[
    for _, m in ipairs(fake.log) do if m.method == '$/cancelRequest' then return true end end
  ]])
end, 5000)
H.eq(0, #chat_buffers(), 'chat splits after q')

-- 3. A stream the server starts on its own opens a split with its title.
H.lua('fake_server.server_stream("server-1")')
local server_buf = H.wait('a split for the server-started stream', function()
  return chat_buffers()[1]
end, 5000)
H.eq('# Explain\n\nServer started this.', H.buffer_text(server_buf), 'server-started stream')
H.input('q')
H.wait('the server-started split to close', function()
  return #chat_buffers() == 0
end, 5000)

-- 4. A code action resolved by the server applies its edit (through vim.lsp.buf.code_action).
H.lua([[vim.lsp.buf.code_action({
  apply = true,
  range = { start = { 1, 0 }, ['end'] = { 1, 13 } }, -- Neovim makes the end inclusive.
  filter = function(action) return action.title == 'Fake: uppercase' end,
})]])
H.wait('the code action edit', function()
  return H.buffer_text(source_buf) == 'UPPER\n    return a + b\n'
end, 5000)

-- 5. "Edit with instruction…" asks for the instruction, then the server applies the rewrite.
H.lua([[
  vim.ui.input = function(opts, on_confirm) _G.prompted = opts.prompt; on_confirm('INSTRUCTED') end
  vim.lsp.buf.code_action({
    apply = true,
    range = { start = { 1, 0 }, ['end'] = { 1, 13 } }, -- Neovim makes the end inclusive.
    filter = function(action) return action.command and action.command.command == 'wellspring.instructPrompt' end,
  })
]])
H.wait('the instructed edit', function()
  return H.buffer_text(source_buf) == 'INSTRUCTED\n    return a + b\n'
end, 5000)
H.eq('Wellspring instruction: ', H.lua('return _G.prompted'), 'instruction prompt')

-- 6. `wellspring/status` feeds the status-line component.
H.lua([[vim.o.statusline = "%{v:lua.require'wellspring'.status()}"]])
local function statusline()
  return H.lua('return vim.api.nvim_eval_statusline(vim.o.statusline, {}).str')
end
H.eq('', statusline(), 'status line before any status')
H.lua([[fake_server.dispatchers.notification('wellspring/status', { state = 'loading', message = 'loading tiny.gguf', progress = 0.5 })]])
H.eq('Wellspring: loading tiny.gguf 50%', statusline(), 'status line while loading')
H.lua([[fake_server.dispatchers.notification('wellspring/status', { state = 'ready', message = '' })]])
H.eq('Wellspring: ready', statusline(), 'status line when ready')

H.pass()
