--- Finds the server binary when setup() was given neither `bin` nor `cmd`: `wellspring` on PATH,
--- else the portable build that :WellspringInstall put into the plugin's own bin/ folder.
local M = {}

local this_file = debug.getinfo(1, 'S').source:sub(2)

--- The folder that holds the plugin's lua/, plugin/ and lsp/ (editors/nvim in a checkout).
--- $WELLSPRING_NVIM_ROOT replaces it, which lets tests install into a folder of their own.
---@return string
function M.root()
  local override = vim.env.WELLSPRING_NVIM_ROOT
  if override and override ~= '' then
    return (vim.fn.fnamemodify(vim.fs.normalize(override), ':p'):gsub('/$', ''))
  end
  return vim.fn.fnamemodify(this_file, ':p:h:h:h')
end

--- Where :WellspringInstall puts the binary.
---@return string
function M.installed_path()
  return M.root() .. '/bin/wellspring'
end

---@class wellspring.FoundBinary
---@field path string
---@field source 'PATH'|'installed'

--- The binary a server started now would run, or nil when there is none.
---@return wellspring.FoundBinary?
function M.resolve()
  local on_path = vim.fn.exepath('wellspring')
  if on_path ~= '' then
    return { path = on_path, source = 'PATH' }
  end
  local installed = M.installed_path()
  if vim.fn.executable(installed) == 1 then
    return { path = installed, source = 'installed' }
  end
  return nil
end

--- Why no server starts, and how to get one.
---@return string
function M.missing_message()
  return ('wellspring: no server binary (`wellspring` is not on PATH and %s does not exist); '
    .. 'run :WellspringInstall, or pass bin = "/path/to/wellspring" to require("wellspring").setup()'):format(
    M.installed_path()
  )
end

--- The `cmd` of the LSP config. A function, so that each server start looks again and a server
--- started after :WellspringInstall runs the new binary. Neovim before 0.11.3 passes only the
--- dispatchers; there `cmd_cwd` and `cmd_env` come from the registered config instead.
---@param dispatchers vim.lsp.rpc.Dispatchers
---@param config? vim.lsp.ClientConfig
---@return vim.lsp.rpc.PublicClient
function M.cmd(dispatchers, config)
  local found = M.resolve()
  if not found then
    error(M.missing_message(), 0)
  end
  config = config or vim.lsp.config.wellspring or {}
  return vim.lsp.rpc.start({ found.path, 'serve' }, dispatchers, {
    cwd = config.cmd_cwd,
    env = config.cmd_env,
    detached = config.detached,
  })
end

return M
