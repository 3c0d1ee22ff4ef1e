--- Wellspring: attach hook and user commands; everything else loads on first use.
if vim.g.loaded_wellspring then
  return
end
vim.g.loaded_wellspring = true

vim.api.nvim_create_autocmd('LspAttach', {
  group = vim.api.nvim_create_augroup('wellspring', { clear = true }),
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if client and client.name == 'wellspring' then
      require('wellspring').attach(client, args.buf)
    end
  end,
})

vim.api.nvim_create_user_command('WellspringChat', function(cmd)
  require('wellspring.chat').start(cmd)
end, { nargs = '*', range = true, desc = 'Ask Wellspring about the selection' })

vim.api.nvim_create_user_command('WellspringInstall', function(cmd)
  require('wellspring.install').install(cmd.args, { async = true })
end, { nargs = '?', complete = 'file', desc = 'Install the portable Wellspring server into the plugin' })

vim.api.nvim_create_user_command('WellspringModel', function()
  require('wellspring.model').command()
end, { nargs = 0, desc = 'Choose the model Wellspring runs' })
