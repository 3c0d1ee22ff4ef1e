--- `:checkhealth wellspring`: the binary, the running server and what it reports about its model.
local M = {}

local function check_binary(health)
  local config = vim.lsp.config.wellspring or {}
  local cmd = type(config.cmd) == 'table' and config.cmd or { 'wellspring' }
  local path = vim.fn.exepath(cmd[1])
  if path == '' then
    health.error(('binary `%s` not found'):format(cmd[1]), {
      'put `wellspring` on PATH or pass `bin = "/path/to/wellspring"` to require("wellspring").setup()',
    })
    return
  end
  local ok, res = pcall(function()
    return vim.system({ path, '--version' }, { text = true }):wait(5000)
  end)
  if ok and res.code == 0 then
    health.ok(('%s (%s)'):format(vim.trim(res.stdout), path))
  else
    local why = ok and vim.trim(res.stderr or '') or tostring(res)
    health.error(('`%s --version` failed: %s'):format(path, why))
  end
end

local function check_client(health, client)
  local buffers = vim.tbl_keys(client.attached_buffers)
  health.ok(('server %d attached to %d buffer(s), root %s'):format(client.id, #buffers, client.root_dir or '(none)'))
  local response, err = client:request_sync('wellspring/serverInfo', nil, 5000)
  if not response then
    return health.error('wellspring/serverInfo: ' .. tostring(err or 'no answer'))
  elseif response.err then
    return health.error('wellspring/serverInfo: ' .. response.err.message)
  end
  local info = response.result or {}
  health.info(('version %s, position encoding %s, %d open document(s)'):format(
    tostring(info.version),
    tostring(info.positionEncoding),
    info.openDocuments or 0
  ))
  local state, model = info.state, info.model
  if state == 'ready' and type(model) == 'string' then
    health.ok(('model loaded: %s (backend %s)'):format(model, tostring(info.backend)))
  elseif state == 'loading' or state == 'busy' then
    health.info(('model %s: %s (backend %s)'):format(state, tostring(model), tostring(info.backend)))
  elseif state == nil then
    health.warn('the server does not report a model state; it may be older than this plugin')
  else
    local last = require('wellspring').last_status()
    health.error(('model not loaded (state %s)%s'):format(state, last and (': ' .. last.message) or ''), {
      'set `settings = { model = { path = "/path/to/model.gguf" } }` in setup()',
    })
  end
  local device = info.device
  if type(device) == 'table' and (device.layersOffloaded or 0) > 0 then
    local memory = ''
    if type(device.memoryUsed) == 'number' and type(device.memoryTotal) == 'number' then
      memory = (', %.1f GiB of %.1f GiB'):format(device.memoryUsed / 2 ^ 30, device.memoryTotal / 2 ^ 30)
      if type(device.memoryPlanned) == 'number' then
        memory = memory .. (' (planned %.1f GiB)'):format(device.memoryPlanned / 2 ^ 30)
      end
    end
    health.ok(('device: %s %s, %d/%d layers offloaded%s'):format(
      tostring(device.backend),
      tostring(device.name),
      device.layersOffloaded,
      device.layers or 0,
      memory
    ))
  elseif type(device) == 'table' then
    health.info(('device: the CPU (%s); no layers offloaded'):format(tostring(device.name)))
  end
  local engine = info.engine
  if type(engine) == 'table' and engine.mode == 'shared' then
    health.info(('shared engine: pid %s, %s window(s), socket %s'):format(
      tostring(engine.pid),
      tostring(engine.clients),
      tostring(engine.socket)
    ))
  elseif type(engine) == 'table' then
    health.info('engine: inside this server (engine.mode = "in_process")')
  end
  local chat_state = info.chatModelState
  if chat_state == 'ready' then
    health.ok(('chat model loaded: %s'):format(tostring(info.chatModel)))
  elseif chat_state == 'loading' then
    health.info('chat model: still downloading or loading; chats wait for it, completions do not')
  elseif chat_state == 'unavailable' then
    health.warn(('chat model unavailable: %s'):format(tostring(info.chatModelError)), {
      'fix `settings = { model = { chat_path = ... } }`, or leave it empty to chat with the completion model',
    })
  end
end

function M.check()
  local health = vim.health
  health.start('wellspring')
  if vim.fn.has('nvim-0.11') == 0 then
    health.error('Neovim 0.11 or newer is required')
    return
  end
  local native = vim.lsp.inline_completion and vim.lsp.inline_completion.enable
  health.info('ghost text: ' .. (native and 'vim.lsp.inline_completion' or 'plugin extmarks (Neovim 0.11)'))
  check_binary(health)
  local clients = vim.lsp.get_clients({ name = 'wellspring' })
  if #clients == 0 then
    health.warn('no wellspring server is running', { 'open a file; `:lua vim.lsp.enable("wellspring")` if setup() was not called' })
  end
  for _, client in ipairs(clients) do
    check_client(health, client)
  end
end

return M
