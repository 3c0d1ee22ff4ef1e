--- The first run: when the server has no model (`wellspring/status` state "noModel"; it never
--- downloads one by itself) this asks once a session whether to download the default, use a local
--- GGUF file or use a built-in model, and :WellspringModel asks again at any time. It also warns
--- once when the loaded model has no fill-in-the-middle tokens.
local M = {}

local last_offer = nil ---@type table?
local prompted = false
local fim_warned = false
local awaiting_ready = false

M.FIM_ADVICE = 'choose a FIM-trained base model in settings.model.path: the default '
  .. 'hf:ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/qwen2.5-coder-1.5b-q8_0.gguf, '
  .. 'or any Qwen2.5-Coder, StarCoder2 or CodeLlama base GGUF (:WellspringModel)'

local function notify(message, level)
  vim.notify('Wellspring: ' .. message, level or vim.log.levels.INFO)
end

--- A size for people: "1.6 GB", "491 MB"; nil without a number.
---@param n_bytes any
---@return string?
function M.size(n_bytes)
  if type(n_bytes) ~= 'number' then
    return nil
  elseif n_bytes >= 1e9 then
    return ('%.1f GB'):format(n_bytes / 1e9)
  end
  return ('%d MB'):format(math.floor(n_bytes / 1e6 + 0.5))
end

local function with_size(text, n_bytes)
  local size = M.size(n_bytes)
  return size and ('%s (%s)'):format(text, size) or text
end

--- Sets the model for this session: every server reloads, and servers started later get it too.
---@param spec string a GGUF path or a built-in model name
function M.use(spec)
  awaiting_ready = true
  require('wellspring').update_settings({ model = { path = spec } })
  notify(('using %s for this session; to keep it, put settings = { model = { path = %q } } in setup()'):format(spec, spec))
end

local function download(client, offer)
  awaiting_ready = true
  notify(('downloading %s; the status line (require("wellspring").status()) shows how far it got'):format(
    with_size(offer.description or offer.spec, offer.bytes)
  ))
  client:request('workspace/executeCommand', { command = 'wellspring.downloadModel', arguments = {} }, function(err)
    if err then
      awaiting_ready = false
      notify('cannot download the model: ' .. tostring(err.message), vim.log.levels.ERROR)
    end
  end)
end

local function ask_path()
  vim.ui.input({ prompt = 'GGUF file: ', completion = 'file' }, function(input)
    if not input or vim.trim(input) == '' then
      return
    end
    input = vim.trim(input)
    -- A download spec goes to the server as it is; it knows those forms (docs/configuration.md).
    if input:match('^hf:') or input:match('^ollama:') then
      return M.use(input)
    end
    local path = vim.fn.fnamemodify(vim.fs.normalize(input), ':p')
    local stat = vim.uv.fs_stat(path)
    if not stat or stat.type ~= 'file' then
      return notify(('%s is not a file; :WellspringModel asks again'):format(path), vim.log.levels.ERROR)
    end
    M.use(path)
  end)
end

--- Asks which model to use. The download choice is there while the server has no model and a
--- running server offered one; the built-in names come from the last offer.
---@param client? vim.lsp.Client
function M.choose(client)
  local status = require('wellspring').last_status()
  local no_model = status and status.state == 'noModel'
  local offer = (no_model and status.offer) or last_offer or {}
  local items = {}
  if no_model and client and offer.spec then
    items[#items + 1] = {
      label = 'Download the default: ' .. with_size(offer.description or offer.spec, offer.bytes),
      run = function()
        download(client, offer)
      end,
    }
  end
  items[#items + 1] = { label = 'Choose a local GGUF file…', run = ask_path }
  for _, builtin in ipairs(offer.builtins or {}) do
    items[#items + 1] = {
      label = 'Use a built-in model: ' .. with_size(builtin.name, builtin.bytes),
      run = function()
        M.use(builtin.name)
      end,
    }
  end
  vim.ui.select(items, {
    prompt = no_model and 'Wellspring needs a model' or 'Wellspring model',
    format_item = function(item)
      return item.label
    end,
  }, function(item)
    if item then
      return item.run()
    end
    if no_model then
      notify('completions are off until a model is chosen: :WellspringModel asks again', vim.log.levels.WARN)
    end
  end)
end

--- :WellspringModel: the same choice, for the server of the current buffer (or any).
function M.command()
  local client = vim.lsp.get_clients({ name = 'wellspring', bufnr = 0 })[1] or vim.lsp.get_clients({ name = 'wellspring' })[1]
  M.choose(client)
end

--- Called by init.lua for every `wellspring/status`.
---@param client? vim.lsp.Client
---@param params table
function M.on_status(client, params)
  if params.state == 'noModel' then
    last_offer = params.offer or last_offer
    if not prompted and client then
      prompted = true
      vim.schedule(function()
        M.choose(client)
      end)
    end
  elseif params.state == 'ready' then
    if awaiting_ready then
      awaiting_ready = false
      notify('model ready: ' .. tostring(params.model or params.message))
    end
    if params.fim == false and not fim_warned then
      fim_warned = true
      notify(
        'the model has no fill-in-the-middle tokens, so completions only continue the text before the cursor; to fix it, '
          .. M.FIM_ADVICE,
        vim.log.levels.WARN
      )
    end
  end
end

return M
