--- :WellspringChat on a visual selection, against the real server and the tiny model: the split
--- opens, streamed `wellspring/chatProgress` text arrives in it, and `q` closes it.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

H.start('chat', { ['main.py'] = 'def add(a, b):\n    return a + b\n' })
H.edit('main.py')
H.require_capability('executeCommandProvider', 'wellspring.chat')
H.wait_ready()

local header = '# What does this function do?\n\n'
H.input('Vj:WellspringChat What does this function do?<CR>')
local chat = H.wait('a chat split', function()
  return H.lua([[
    local buf = vim.api.nvim_get_current_buf()
    return vim.api.nvim_buf_get_name(buf):match('^wellspring://chat/') and buf or nil
  ]])
end)
-- The tiny model writes noise, but the stream must put some of it into the split.
local function view_streamed()
  return H.lua([[
    for _, view in pairs(require('wellspring.chat').views()) do
      if view.buf == ... then return view.streamed == true end
    end
    return false
  ]], chat)
end
local answer = H.wait('streamed text in the chat split', function()
  local text = H.buffer_text(chat)
  H.check(not text:find('[error]', 1, true), 'the chat request failed:\n' .. text)
  return view_streamed() and #text > #header and text
end)
H.eq(header, answer:sub(1, #header), 'chat split header')

H.input('q')
H.wait('q to close the chat split', function()
  return H.lua('return #vim.api.nvim_list_wins() == 1 and not vim.api.nvim_buf_is_valid(...)', chat)
end)
-- The server survives the cancellation and still answers.
local info = H.lua([[
  local client = vim.lsp.get_clients({ name = 'wellspring' })[1]
  return client:request_sync('wellspring/serverInfo', nil, 10000)
]])
H.check(info and info.result, 'server did not answer after the chat was closed: ' .. vim.inspect(info))

H.pass()
