--- `:checkhealth wellspring`: which binary runs and where it came from, the running server, and
--- a last line that names exactly what is missing: binary, model, FIM support or backend.
local M = {}

--- Where the configured `cmd` comes from, and the binary it runs; nil path for a custom function.
local function configured_binary()
  local binary = require('wellspring.binary')
  local cmd = (vim.lsp.config.wellspring or {}).cmd
  if cmd == nil or cmd == binary.cmd then
    local found = binary.resolve()
    if not found then
      return nil, 'auto'
    elseif found.source == 'PATH' then
      return found.path, 'found on PATH'
    end
    return found.path, ('installed in %s by :WellspringInstall'):format(vim.fs.dirname(found.path))
  elseif type(cmd) == 'table' then
    local plugin = require('wellspring').config
    local from_setup = vim.deep_equal(cmd, plugin.cmd or (plugin.bin and { plugin.bin, 'serve' }))
    local source = from_setup and ('given in setup() (`%s`)'):format(plugin.cmd and 'cmd' or 'bin')
      or 'given by vim.lsp.config("wellspring", { cmd = ... })'
    local path = vim.fn.exepath(cmd[1])
    return path ~= '' and path or nil, source, cmd[1]
  end
  return nil, 'custom'
end

local function check_binary(health, missing)
  local binary = require('wellspring.binary')
  local path, source, name = configured_binary()
  if source == 'custom' then
    return health.info('`cmd` is a function of your own; its binary is not checked')
  elseif not path then
    missing[#missing + 1] = 'binary'
    if source == 'auto' then
      return health.error(
        ('no wellspring binary: none given in setup(), none on PATH, none in %s'):format(vim.fs.dirname(binary.installed_path())),
        {
          ':WellspringInstall installs the portable build: from dist/ of a checkout (scripts/dist.sh makes it), '
            .. 'or :WellspringInstall /path/to/wellspring-VERSION-linux-x86_64.tar.xz from a release',
          'or put `wellspring` on PATH, or pass `bin = "/path/to/wellspring"` to require("wellspring").setup()',
        }
      )
    end
    return health.error(('binary `%s` (%s) not found'):format(name, source), {
      'fix the path, or leave `bin` and `cmd` unset to use `wellspring` on PATH or :WellspringInstall',
    })
  end
  local ok, res = pcall(function()
    return vim.system({ path, '--version' }, { text = true }):wait(5000)
  end)
  if ok and res.code == 0 then
    health.ok(('%s (%s), %s'):format(vim.trim(res.stdout), path, source))
  else
    missing[#missing + 1] = 'binary'
    local why = ok and vim.trim(res.stderr or '') or tostring(res)
    health.error(('`%s --version` failed (%s): %s'):format(path, source, why), {
      'a portable build needs its libraries (libllama.so.0, libggml*.so) beside it: :WellspringInstall installs them together',
    })
  end
  local installed = binary.installed_path()
  if path ~= installed and vim.fn.executable(installed) == 1 then
    health.info(('also installed in %s, unused: %s comes first'):format(vim.fs.dirname(installed), source))
  end
end

--- What the server reports about its model: loaded, loading, missing (with how to get one),
--- broken, or lacking the backend libraries; and whether it can fill in the middle.
local function check_model(health, info, missing)
  local state, model = info.state, info.model
  local last = require('wellspring').last_status()
  local message = last and last.message ~= '' and last.message or nil
  if state == 'ready' and type(model) == 'string' then
    health.ok(('model loaded: %s (backend %s)'):format(model, tostring(info.backend)))
  elseif state == 'loading' then
    health.info(('model %s: %s (backend %s)'):format(state, tostring(model), tostring(info.backend)))
  elseif state == nil then
    health.warn('the server does not report a model state; it may be older than this plugin')
  elseif state == 'noModel' then
    missing[#missing + 1] = 'model'
    local offer = type(info.offer) == 'table' and info.offer or {}
    local size = require('wellspring.model').size(offer.bytes)
    local default = table.concat(vim.tbl_filter(function(part)
      return part ~= nil
    end, { offer.description or offer.spec, size }), ', ')
    health.error(('no model: the default%s is not downloaded'):format(default ~= '' and (' (' .. default .. ')') or ''), {
      ':WellspringModel downloads it, or takes a local GGUF file or a built-in model name',
      'or set `settings = { model = { path = "/path/to/model.gguf" } }` in setup()',
    })
  elseif state == 'error' and message and message:find('no ggml backend', 1, true) then
    missing[#missing + 1] = 'backend'
    health.error('no backend: ' .. message, {
      'the portable build loads libggml-cpu-*.so (and GPU backends) from beside the binary: '
        .. ':WellspringInstall installs the binary with them',
      'or point WELLSPRING_BACKENDS_DIR at the folder that holds them',
    })
  elseif state == 'disabled' then
    health.info('completions are disabled (settings.completion.enabled = false)')
  else
    missing[#missing + 1] = 'model'
    health.error(('model not loaded (state %s)%s'):format(state, message and (': ' .. message) or ''), {
      'set `settings = { model = { path = "/path/to/model.gguf" } }` in setup(), or choose one with :WellspringModel',
    })
  end
  if info.fim == false then
    missing[#missing + 1] = 'FIM support'
    health.warn('the model has no fill-in-the-middle tokens: completions only continue the text before the cursor', {
      require('wellspring.model').FIM_ADVICE,
    })
  elseif info.fim == true then
    health.ok('the model fills in the middle (it has FIM tokens)')
  end
end

local function check_client(health, client, missing)
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
  if type(info.binary) == 'string' then
    health.info('server binary: ' .. info.binary)
  end
  check_model(health, info, missing)
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
  local missing = {}
  check_binary(health, missing)
  local clients = vim.lsp.get_clients({ name = 'wellspring' })
  if #clients == 0 then
    health.warn('no wellspring server is running', { 'open a file; `:lua vim.lsp.enable("wellspring")` if setup() was not called' })
  end
  for _, client in ipairs(clients) do
    check_client(health, client, missing)
  end
  -- One line that names everything missing, each once, whatever the number of servers.
  local names, seen = {}, {}
  for _, name in ipairs(missing) do
    if not seen[name] then
      seen[name] = true
      names[#names + 1] = name
    end
  end
  if #names == 1 and names[1] == 'FIM support' then
    health.warn('missing: FIM support')
  elseif #names > 0 then
    health.error('missing: ' .. table.concat(names, ', '))
  elseif #clients > 0 then
    health.ok('nothing missing')
  end
end

return M
