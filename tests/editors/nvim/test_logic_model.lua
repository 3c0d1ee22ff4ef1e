--- The first run against the scripted server (fake_server.lua): a `wellspring/status` "noModel"
--- asks once which model to use, and each choice sends exactly its request: the download
--- command, or didChangeConfiguration with model.path set to a file or a built-in name.
--- :WellspringModel asks again, a dismissal says how to come back, and a model without FIM
--- tokens is reported once.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

H.start('logic_model', { ['main.py'] = 'x = 1\n', ['coder.gguf'] = 'not really a model' }, { fake = true })
H.edit('main.py')

-- vim.ui.select picks the item whose label starts with the next queued answer (none: dismissed),
-- vim.ui.input answers the next queued text, vim.notify is recorded.
H.lua([[
  _G.seen = { selects = {}, inputs = {}, notes = {} }
  _G.answers = { select = {}, input = {} }
  vim.ui.select = function(items, opts, on_choice)
    local labels = {}
    for _, item in ipairs(items) do labels[#labels + 1] = opts.format_item(item) end
    table.insert(seen.selects, { prompt = opts.prompt, labels = labels })
    local want = table.remove(answers.select, 1)
    for idx, item in ipairs(items) do
      if want and labels[idx]:sub(1, #want) == want then return on_choice(item, idx) end
    end
    on_choice(nil, nil)
  end
  vim.ui.input = function(opts, on_confirm)
    table.insert(seen.inputs, { prompt = opts.prompt, completion = opts.completion })
    on_confirm(table.remove(answers.input, 1))
  end
  vim.notify = function(msg, level) table.insert(seen.notes, { msg = msg, level = level }) end
]])

local offer = {
  spec = 'hf:ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/qwen2.5-coder-1.5b-q8_0.gguf',
  description = 'Qwen2.5-Coder 1.5B base, Q8_0',
  bytes = 1646570848,
  builtins = {
    { name = 'qwen2.5-coder-0.5b', description = 'Qwen2.5-Coder 0.5B instruct, Q4_K_M', bytes = 491400064 },
    { name = 'qwen2.5-coder-1.5b', description = 'Qwen2.5-Coder 1.5B instruct, Q4_K_M', bytes = 1117320704 },
  },
}
local labels = {
  'Download the default: Qwen2.5-Coder 1.5B base, Q8_0 (1.6 GB)',
  'Choose a local GGUF file…',
  'Use a built-in model: qwen2.5-coder-0.5b (491 MB)',
  'Use a built-in model: qwen2.5-coder-1.5b (1.1 GB)',
}

local function send_status(params)
  H.lua('fake_server.dispatchers.notification("wellspring/status", ...)', params)
end

-- Runs what the plugin scheduled so far: the prompt is scheduled from the status handler.
local function settle()
  H.lua('_G.settled = false; vim.schedule(function() _G.settled = true end)')
  H.wait('scheduled callbacks to run', function()
    return H.lua('return _G.settled')
  end, 5000)
end

local function answer(select, input)
  H.lua('table.insert(answers.select, ...)', select)
  if input then
    H.lua('table.insert(answers.input, ...)', input)
  end
end

local function n_selects()
  return H.lua('return #seen.selects')
end

-- What the server received since the log was cleared, by method (and command).
local function received(method, command)
  return H.lua(
    [[
    local method, command = ...
    local found = {}
    for _, m in ipairs(fake.log) do
      if m.method == method and (not command or m.params.command == command) then found[#found + 1] = m.params end
    end
    return found
  ]],
    method,
    command
  )
end

local function notes_matching(pattern)
  return H.lua(
    [[
    local found = {}
    for _, note in ipairs(seen.notes) do
      if note.msg:find(..., 1, true) then found[#found + 1] = note end
    end
    return found
  ]],
    pattern
  )
end

local function wait_note(pattern)
  return H.wait(('a message with %q'):format(pattern), function()
    return notes_matching(pattern)[1]
  end, 5000)
end

-- 1. noModel asks, with the default's size and every built-in; "Download" runs the command.
H.lua('fake.log = {}')
answer('Download the default')
send_status({ state = 'noModel', message = 'no model', offer = offer })
settle()
H.eq(1, n_selects(), 'prompts after the first noModel')
local prompt = H.lua('return seen.selects[1]')
H.eq('Wellspring needs a model', prompt.prompt, 'prompt')
H.eq(labels, prompt.labels, 'choices')
local download = H.wait('the download command', function()
  return received('workspace/executeCommand', 'wellspring.downloadModel')[1]
end, 5000)
H.eq({ command = 'wellspring.downloadModel', arguments = {} }, download, 'download request')
local started = wait_note('downloading Qwen2.5-Coder 1.5B base, Q8_0 (1.6 GB)')
H.eq(vim.log.levels.INFO, started.level, 'level of the download message')

-- 2. More noModel statuses (the server sends one per change) do not ask again.
send_status({ state = 'noModel', message = 'no model', offer = offer })
send_status({ state = 'noModel', message = 'no model', offer = offer })
settle()
H.eq(1, n_selects(), 'prompts after three noModel statuses')

-- 3. :WellspringModel asks again; a failed download comes back as an error message.
H.lua('fake.download_error = { code = -32603, message = "cannot reach huggingface.co" }')
answer('Download the default')
H.lua('vim.cmd.WellspringModel()')
H.eq(2, n_selects(), 'prompts after :WellspringModel')
H.eq(labels, H.lua('return seen.selects[2].labels'), 'choices of :WellspringModel')
local failed = wait_note('cannot reach huggingface.co')
H.eq(vim.log.levels.ERROR, failed.level, 'level of the download error')
H.lua('fake.download_error = nil')

-- 4. "Choose a local GGUF file…" asks for a path (with file completion) and sets model.path to
--    it, absolute, keeping the other settings.
H.lua('fake.log = {}')
answer('Choose a local GGUF file', 'coder.gguf')
H.lua('vim.cmd.WellspringModel()')
local change = H.wait('didChangeConfiguration with the file', function()
  return received('workspace/didChangeConfiguration')[1]
end, 5000)
local model_file = H.lua('return vim.fn.fnamemodify("coder.gguf", ":p")')
H.eq(model_file, change.settings.wellspring.model.path, 'model.path after choosing a file')
H.eq(16, change.settings.wellspring.completion.max_tokens, 'other settings after choosing a file')
H.eq({ prompt = 'GGUF file: ', completion = 'file' }, H.lua('return seen.inputs[1]'), 'file prompt')
H.eq({}, received('workspace/executeCommand', 'wellspring.downloadModel'), 'downloads after choosing a file')

-- 5. A path that is no file is refused with an error and nothing is sent.
H.lua('fake.log = {}')
answer('Choose a local GGUF file', 'missing.gguf')
H.lua('vim.cmd.WellspringModel()')
local refused = wait_note('missing.gguf is not a file')
H.eq(vim.log.levels.ERROR, refused.level, 'level of a refused path')
H.eq({}, received('workspace/didChangeConfiguration'), 'didChangeConfiguration after a refused path')

-- 6. A download spec typed at the file prompt goes to the server as it is.
answer('Choose a local GGUF file', 'hf:owner/repo/coder.gguf')
H.lua('vim.cmd.WellspringModel()')
change = H.wait('didChangeConfiguration with the spec', function()
  return received('workspace/didChangeConfiguration')[1]
end, 5000)
H.eq('hf:owner/repo/coder.gguf', change.settings.wellspring.model.path, 'model.path after typing a spec')
H.lua('fake.log = {}')

-- 7. A built-in model sets model.path to its name.
answer('Use a built-in model: qwen2.5-coder-0.5b')
H.lua('vim.cmd.WellspringModel()')
change = H.wait('didChangeConfiguration with the built-in name', function()
  return received('workspace/didChangeConfiguration')[1]
end, 5000)
H.eq('qwen2.5-coder-0.5b', change.settings.wellspring.model.path, 'model.path after choosing a built-in')
H.eq({}, received('workspace/executeCommand', 'wellspring.downloadModel'), 'downloads after choosing a built-in')
H.eq('qwen2.5-coder-0.5b', H.lua('return require("wellspring").config.settings.model.path'), 'plugin settings')

-- 8. Dismissing says that completions are off and how to choose later.
answer('nothing')
H.lua('vim.cmd.WellspringModel()')
local dismissed = wait_note('completions are off until a model is chosen')
H.check(dismissed.msg:find(':WellspringModel', 1, true), 'the dismissal does not name :WellspringModel: ' .. dismissed.msg)

-- 9. A ready model without FIM tokens is reported once, naming the fix.
send_status({ state = 'ready', message = '', model = '/models/instruct.gguf', fim = false })
send_status({ state = 'busy', message = '', model = '/models/instruct.gguf', fim = false })
send_status({ state = 'ready', message = '', model = '/models/instruct.gguf', fim = false })
settle()
local fim_notes = notes_matching('no fill-in-the-middle tokens')
H.eq(1, #fim_notes, 'FIM warnings after three statuses')
H.eq(vim.log.levels.WARN, fim_notes[1].level, 'level of the FIM warning')
H.check(fim_notes[1].msg:find('settings.model.path', 1, true), 'the FIM warning names no fix: ' .. fim_notes[1].msg)

-- 10. Once the server is ready, :WellspringModel offers the file and the built-ins, not the download.
answer('nothing')
H.lua('vim.cmd.WellspringModel()')
local ready_prompt = H.lua('return seen.selects[#seen.selects]')
H.eq('Wellspring model', ready_prompt.prompt, 'prompt with a model loaded')
H.eq(vim.list_slice(labels, 2), ready_prompt.labels, 'choices with a model loaded')

H.pass()
