--- The plugin starts the server for a Python file, `wellspring/serverInfo` answers, and
--- `:checkhealth wellspring` finds the binary and the attached server without errors.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

H.start('attach_health', { ['main.py'] = 'def add(a, b):\n    return a + b\n' })
H.edit('main.py')

local info = H.lua([[
  local client = vim.lsp.get_clients({ bufnr = 0, name = 'wellspring' })[1]
  local response, err = client:request_sync('wellspring/serverInfo', nil, 10000)
  return { response = response, err = err and tostring(err) }
]])
H.check(info.response and info.response.result, 'wellspring/serverInfo failed: ' .. vim.inspect(info))
local result = info.response.result
H.check(type(result.version) == 'string' and result.version ~= '', 'serverInfo has no version: ' .. vim.inspect(result))
H.eq(1, result.openDocuments, 'serverInfo.openDocuments')

H.lua('vim.cmd("checkhealth wellspring")')
local report = H.buffer_text()
H.check(report:find('wellspring', 1, true), 'checkhealth printed nothing for wellspring:\n' .. report)
H.check(report:find('OK wellspring ' .. result.version, 1, true), 'checkhealth did not find the binary:\n' .. report)
H.check(report:find('OK server %d+ attached to 1 buffer'), 'checkhealth did not see the server:\n' .. report)
H.check(not report:find('ERROR'), 'checkhealth reported an error:\n' .. report)

H.pass()
