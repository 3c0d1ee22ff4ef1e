--- The first run against the real server with no model configured and an empty model cache: the
--- server downloads nothing and reports "noModel", the plugin asks which model to use (the
--- download choice shows the default's size), :checkhealth names the missing model, and choosing
--- the tiny test model as a local GGUF file makes the server ready and complete.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

-- A home of the test's own: no config file, no cached model.
local home = vim.fn.tempname()
vim.fn.mkdir(home .. '/cache', 'p')
vim.fn.mkdir(home .. '/config', 'p')

H.start('no_model', { ['main.py'] = 'def add(a, b):\n    return a + b\n' }, { no_model = true })
H.lua('vim.lsp.config("wellspring", { cmd_env = ... })', {
  HOME = home,
  XDG_CACHE_HOME = home .. '/cache',
  XDG_CONFIG_HOME = home .. '/config',
})
-- The prompt is held open (as a user reading it would) until the test answers it.
H.lua([[
  vim.ui.select = function(items, opts, on_choice)
    local labels = {}
    for _, item in ipairs(items) do labels[#labels + 1] = opts.format_item(item) end
    _G.prompt = { items = items, labels = labels, prompt = opts.prompt, on_choice = on_choice }
  end
  vim.ui.input = function(opts, on_confirm) on_confirm(_G.model_answer) end
]])
H.edit('main.py')

-- A server older than the "noModel" state tries the download itself and reports an error.
local prompt = H.wait('the model prompt', function()
  local status = H.lua('return require("wellspring").last_status()')
  H.check(not (status and status.state == 'error'), 'the server reported an error instead of "noModel": ' .. vim.inspect(status))
  return H.lua('return _G.prompt and { prompt = _G.prompt.prompt, labels = _G.prompt.labels }')
end)
H.eq('Wellspring needs a model', prompt.prompt, 'prompt')
H.check(prompt.labels[1]:match('^Download the default: .+ %(%d[%d.]* [GM]B%)$'), 'download choice: ' .. vim.inspect(prompt.labels))
H.check(vim.list_contains(prompt.labels, 'Choose a local GGUF file…'), 'no file choice: ' .. vim.inspect(prompt.labels))

H.lua('vim.cmd("checkhealth wellspring")')
local report = H.buffer_text()
H.lua('vim.cmd("bwipeout!")')
H.check(
  report:find('ERROR no model: the default %(.+, %d[%d.]* [GM]B%) is not downloaded'),
  'checkhealth did not report the missing model:\n' .. report
)
H.check(report:find(':WellspringModel', 1, true), 'checkhealth did not name :WellspringModel:\n' .. report)
H.check(report:find('missing: model', 1, true), 'checkhealth did not list the model as missing:\n' .. report)

H.lua(
  [[
  _G.model_answer = ...
  for idx, item in ipairs(_G.prompt.items) do
    if _G.prompt.labels[idx] == 'Choose a local GGUF file…' then return _G.prompt.on_choice(item, idx) end
  end
]],
  H.model
)
H.wait_ready()
local info = H.lua([[
  local client = vim.lsp.get_clients({ bufnr = 0, name = 'wellspring' })[1]
  local response = client:request_sync('wellspring/serverInfo', nil, 10000)
  return response and response.result
]])
H.eq('ready', info and info.state, 'serverInfo.state after choosing a file')
H.check(tostring(info.model):find('tiny.gguf', 1, true), 'serverInfo.model: ' .. vim.inspect(info.model))
H.eq({}, vim.fn.glob(home .. '/cache/**/*.gguf', true, true), 'models in the empty cache')

H.input('Godef mul(a, b):<CR>')
local ghost = H.wait('ghost text after choosing the model', H.ghost_text)
H.check(ghost.text ~= '', 'ghost text is empty')

H.pass()
