--- With the tiny model configured, the real server reports `wellspring/status` "ready", the
--- status-line component shows it, and `:checkhealth wellspring` reports the model as loaded.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

H.start('status', { ['main.py'] = 'print(1)\n' })
H.edit('main.py')

H.wait_ready()
local line = H.lua('return require("wellspring").status()')
H.check(line:match('^Wellspring: .+'), 'status() gave ' .. vim.inspect(line))

H.lua('vim.cmd("checkhealth wellspring")')
local report = H.buffer_text()
H.check(report:find('OK model loaded: [^\n]*tiny%.gguf'), 'checkhealth did not report the model as loaded:\n' .. report)
H.check(not report:find('ERROR'), 'checkhealth reported an error:\n' .. report)

H.pass()
