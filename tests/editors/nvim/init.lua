--- Configuration of the Neovim under test: the plugin from this checkout, the server binary and
--- the tiny test model handed over by harness.lua, nothing from the user's own config.
vim.opt.runtimepath:prepend(assert(os.getenv('WELLSPRING_PLUGIN'), 'WELLSPRING_PLUGIN is not set'))
vim.o.swapfile = false
vim.o.expandtab = false
vim.g.python_recommended_style = 0 -- keep <Tab> a plain tab in the test files

-- The plugin's logic tests swap the real server for a scripted in-process one.
local fake = os.getenv('WELLSPRING_TEST_FAKE')
_G.fake_server = fake and dofile(fake) or nil

-- With WELLSPRING_TEST_FIND_BINARY, setup() gets no `cmd` and the plugin finds the binary itself
-- (PATH, then its bin/); with WELLSPRING_TEST_NO_MODEL, no model is configured.
local real_cmd = {
  assert(os.getenv('WELLSPRING_BIN'), 'WELLSPRING_BIN is not set'),
  '--log-file',
  assert(os.getenv('WELLSPRING_TEST_LOG'), 'WELLSPRING_TEST_LOG is not set'),
  '--log-level',
  'wellspring=debug,info',
  'serve',
}
require('wellspring').setup({
  cmd = _G.fake_server and _G.fake_server.cmd or (not os.getenv('WELLSPRING_TEST_FIND_BINARY') and real_cmd or nil),
  settings = {
    model = not os.getenv('WELLSPRING_TEST_NO_MODEL') and { path = os.getenv('WELLSPRING_TEST_MODEL') } or nil,
    completion = { max_tokens = 16 },
  },
})
