-- Configuration of the Neovim under test: the plugin from this checkout, the server binary and
-- the tiny test model handed over by harness.lua, nothing from the user's own config.
vim.opt.runtimepath:prepend(assert(os.getenv('WELLSPRING_PLUGIN'), 'WELLSPRING_PLUGIN is not set'))
vim.o.swapfile = false
vim.o.expandtab = false

require('wellspring').setup({
  cmd = {
    assert(os.getenv('WELLSPRING_BIN'), 'WELLSPRING_BIN is not set'),
    '--log-file',
    assert(os.getenv('WELLSPRING_TEST_LOG'), 'WELLSPRING_TEST_LOG is not set'),
    '--log-level',
    'wellspring=debug,info',
    'serve',
  },
  settings = {
    model = { path = assert(os.getenv('WELLSPRING_TEST_MODEL'), 'WELLSPRING_TEST_MODEL is not set') },
    completion = { max_tokens = 16 },
  },
})
