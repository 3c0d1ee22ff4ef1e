--- Code actions through plain vim.lsp.buf.code_action(), against the real server: a resolved
--- action's WorkspaceEdit lands in the buffer, and "Edit with instruction…" asks for the
--- instruction (vim.ui.input) and has the server apply the rewrite.
--
-- An edit needs a model that closes its code block, which the tiny random model does not do
-- within the server's token limit for edits. So this test uses $WELLSPRING_TEST_ACTION_MODEL,
-- else models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf when it exists (shared/tools/
-- fetch_models.sh makes it), else the tiny model.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

local model = os.getenv('WELLSPRING_TEST_ACTION_MODEL')
local real = H.repo .. '/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf'
model = model or (vim.fn.filereadable(real) == 1 and real or nil)
io.stdout:write(('code_action: model %s\n'):format(model or H.model))

local source = 'def add(a, b):\n    return a + b\n'
H.start('code_action', { ['main.py'] = source }, { model = model })
H.edit('main.py')
H.require_capability('codeActionProvider')
H.wait_ready()
H.require_capability('executeCommandProvider', 'wellspring.instruct')

local actions = H.lua([[
  local client = vim.lsp.get_clients({ bufnr = 0, name = 'wellspring' })[1]
  local params = vim.lsp.util.make_given_range_params({ 1, 0 }, { 2, 15 }, 0, client.offset_encoding)
  params.context = { diagnostics = {} }
  local response, err = client:request_sync('textDocument/codeAction', params, 10000)
  return { response = response, err = err and tostring(err) }
]])
local list = H.check(actions.response and actions.response.result, 'textDocument/codeAction failed: ' .. vim.inspect(actions))
local edit_title, instruct_title
for _, action in ipairs(list) do
  local command = type(action.command) == 'table' and action.command.command or action.command
  if command == 'wellspring.instructPrompt' then
    instruct_title = action.title
  elseif not edit_title and not command and (action.kind or ''):match('^refactor%.rewrite') then
    edit_title = action.title
  end
end
H.check(edit_title, 'no refactor.rewrite code action that edits: ' .. vim.inspect(list))
H.check(instruct_title, 'no code action with wellspring.instructPrompt: ' .. vim.inspect(list))

local function apply(title)
  H.lua([[
    local title = ...
    vim.lsp.buf.code_action({
      apply = true,
      range = { start = { 1, 0 }, ['end'] = { 2, 15 } },
      filter = function(action) return action.title == title end,
    })
  ]], title)
end

apply(edit_title)
local edited = H.wait(('the edit of %q'):format(edit_title), function()
  H.check_no_lsp_error()
  local text = H.buffer_text()
  return text ~= source and text
end)

H.lua([[vim.ui.input = function(opts, on_confirm) _G.prompted = opts.prompt; on_confirm('rename b to other') end]])
apply(instruct_title)
H.wait('the instructed rewrite', function()
  H.check_no_lsp_error()
  return H.buffer_text() ~= edited
end)
H.check(H.lua('return _G.prompted'), 'the instruction was never asked for')

H.pass()
