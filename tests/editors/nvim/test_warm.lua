--- Opening a file warms the prompt at the cursor (`wellspring/warm` once the model is ready), and
--- resting the cursor on another line warms that line: the server's stats count the tokens.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

H.start('warm', { ['main.py'] = 'def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n' })
H.edit('main.py')
H.wait_ready()

local function warmed()
  return H.lua([[
    local client = vim.lsp.get_clients({ name = 'wellspring' })[1]
    local response = client and client:request_sync('wellspring/stats', nil, 5000)
    return response and response.result and response.result.nTokensWarmed or -1
  ]])
end

H.wait('the opened file to be warmed', function()
  return warmed() > 0
end)
local after_open = warmed()

-- CursorHold fires after 'updatetime' without a key.
H.lua('vim.o.updatetime = 50')
H.input('5G')
H.wait('the line the cursor rests on to be warmed', function()
  return warmed() > after_open
end)
H.check_no_lsp_error()
H.pass()
