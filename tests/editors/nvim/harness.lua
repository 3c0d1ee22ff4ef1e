--- Test harness for the Neovim shim. A test script runs in `nvim --headless -u NONE -l` and
--- drives a second, real Neovim (`nvim --embed --headless`, configured by init.lua beside this
--- file) over RPC the way a UI does: keys go in through nvim_input and are handled by Neovim's
--- own input loop, state is read back with nvim_exec_lua. Every wait is bounded and every
--- failure exits non-zero with a message, the child's messages and the server log's tail.
local H = {}

local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
H.repo = vim.fn.fnamemodify(here .. '/../../..', ':p'):gsub('/$', '')
H.bin = os.getenv('WELLSPRING_BIN') or (H.repo .. '/target/debug/wellspring')
H.model = os.getenv('WELLSPRING_TEST_MODEL') or (H.repo .. '/models/tiny.gguf')
H.timeout_ms = tonumber(os.getenv('WELLSPRING_TEST_TIMEOUT_MS')) or 120000

local chan, workspace, log_path, test_name
local child_stderr = {}

local function tail(path, n_lines)
  local ok, lines = pcall(vim.fn.readfile, path)
  if not ok then
    return '(no server log)'
  end
  return table.concat(vim.list_slice(lines, math.max(1, #lines - n_lines + 1)), '\n')
end

--- Ends the test run with a failure; never returns.
function H.fail(message)
  local report = { ('FAIL %s: %s'):format(test_name or '?', message) }
  if chan then
    local ok, messages = pcall(vim.rpcrequest, chan, 'nvim_exec2', 'messages', { output = true })
    report[#report + 1] = '--- child :messages\n' .. (ok and messages.output or '(child not answering)')
    vim.fn.jobstop(chan)
  end
  if #child_stderr > 0 then
    report[#report + 1] = '--- child stderr\n' .. table.concat(child_stderr, '\n')
  end
  if log_path then
    report[#report + 1] = '--- server log (tail)\n' .. tail(log_path, 40)
  end
  io.stderr:write(table.concat(report, '\n') .. '\n')
  os.exit(1)
end

function H.check(condition, message)
  if not condition then
    H.fail(message)
  end
  return condition
end

function H.eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    H.fail(('%s: expected %s, got %s'):format(what, vim.inspect(expected), vim.inspect(actual)))
  end
end

--- Runs Lua in the child and returns its result.
function H.lua(code, ...)
  local ok, result = pcall(vim.rpcrequest, chan, 'nvim_exec_lua', code, { ... })
  if not ok then
    H.fail('child lua failed: ' .. tostring(result) .. '\n' .. code)
  end
  if result == vim.NIL then
    return nil
  end
  return result
end

--- Sends keys as typed input (`<Esc>`, `<Tab>`, … notation).
function H.input(keys)
  vim.rpcrequest(chan, 'nvim_input', keys)
end

--- Waits until `predicate()` returns a truthy value and returns that value.
function H.wait(what, predicate, timeout_ms)
  local value
  local ok = vim.wait(timeout_ms or H.timeout_ms, function()
    value = predicate()
    return value ~= nil and value ~= false
  end, 20)
  if not ok then
    H.fail(('timed out after %d ms waiting for %s'):format(timeout_ms or H.timeout_ms, what))
  end
  return value
end

--- Starts the child Neovim in a fresh workspace holding `files` (name -> text). With
--- `opts.fake`, the child talks to fake_server.lua instead of the real binary; `opts.model`
--- replaces the tiny test model, `opts.no_model` leaves the model setting out, `opts.find_binary`
--- leaves `cmd` out of setup() so that the plugin finds the binary itself, and `opts.env` adds to
--- the child's environment.
function H.start(name, files, opts)
  test_name = name
  opts = opts or {}
  local model = opts.model or H.model
  H.check(opts.fake or vim.fn.executable(H.bin) == 1, ('server binary %s not found; run `cargo build` or set WELLSPRING_BIN'):format(H.bin))
  H.check(
    opts.fake or opts.no_model or vim.fn.filereadable(model) == 1,
    ('test model %s not found; run scripts/test-models.sh or set WELLSPRING_TEST_MODEL'):format(model)
  )
  workspace = vim.fn.tempname()
  vim.fn.mkdir(workspace .. '/.git', 'p')
  for file, text in pairs(files or {}) do
    vim.fn.writefile(vim.split(text, '\n', { plain = true }), workspace .. '/' .. file)
  end
  log_path = workspace .. '/server.log'
  local argv = { vim.v.progpath, '--embed', '--headless', '-n', '-i', 'NONE', '-u', here .. '/init.lua' }
  chan = vim.fn.jobstart(argv, {
    rpc = true,
    cwd = workspace,
    env = vim.tbl_extend('force', {
      WELLSPRING_PLUGIN = H.repo .. '/editors/nvim',
      WELLSPRING_BIN = H.bin,
      WELLSPRING_TEST_MODEL = model,
      WELLSPRING_TEST_LOG = log_path,
      WELLSPRING_TEST_FAKE = opts.fake and (here .. '/fake_server.lua') or nil,
      WELLSPRING_TEST_NO_MODEL = opts.no_model and '1' or nil,
      WELLSPRING_TEST_FIND_BINARY = opts.find_binary and '1' or nil,
    }, opts.env or {}),
    on_stderr = function(_, data)
      vim.list_extend(child_stderr, vim.tbl_filter(function(line)
        return line ~= ''
      end, data))
    end,
  })
  H.check(chan > 0, 'could not start ' .. argv[1])
  H.workspace = workspace
  return H
end

--- Opens a file in the child and waits until the wellspring client is attached to it.
function H.edit(file)
  H.lua('vim.cmd.edit(...)', file)
  return H.wait('the wellspring client to attach to ' .. file, function()
    return H.lua([[
      local client = vim.lsp.get_clients({ bufnr = 0, name = 'wellspring' })[1]
      return client and client.initialized and client.id or nil
    ]])
  end)
end

--- Fails unless the attached server advertises `capability` (a key of ServerCapabilities),
--- and, for executeCommandProvider, the command `command`.
function H.require_capability(capability, command)
  local value = H.lua('return vim.lsp.get_clients({ bufnr = 0, name = "wellspring" })[1].server_capabilities[...]', capability)
  H.check(value, 'the server does not advertise ' .. capability)
  if command then
    H.check(vim.list_contains(value.commands or {}, command), ('the server does not offer the command %s'):format(command))
  end
end

--- Waits for `wellspring/status` "ready", as a user waits for the model to load.
function H.wait_ready()
  H.wait('wellspring/status with state "ready"', function()
    local status = H.lua('return require("wellspring").last_status()')
    H.check(not (status and status.state == 'error'), 'the server reported an error: ' .. vim.inspect(status))
    return status and status.state == 'ready'
  end)
end

function H.buffer_text(bufnr)
  return table.concat(H.lua('return vim.api.nvim_buf_get_lines(... or 0, 0, -1, true)', bufnr), '\n')
end

--- The ghost text drawn by the plugin in the current buffer, or nil when none is shown.
function H.ghost_text()
  return H.lua([[
    local ns = vim.api.nvim_get_namespaces()['wellspring.ghost']
    if not ns then return nil end
    local marks = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })
    for _, mark in ipairs(marks) do
      local details = mark[4]
      if details.virt_text then
        local parts = { details.virt_text[1][1] }
        for _, line in ipairs(details.virt_lines or {}) do
          parts[#parts + 1] = line[1][1]
        end
        return { row = mark[2], col = mark[3], text = table.concat(parts, '\n'), pos = details.virt_text_pos }
      end
    end
    return nil
  ]])
end

--- Fails at once when Neovim has shown an LSP error (`<code>: <message>`) since the last call.
function H.check_no_lsp_error()
  local messages = H.lua('return vim.api.nvim_exec2("messages", { output = true }).output')
  local line = messages:match('%-%d+: [^\n]*')
  H.check(not line, 'the server answered with an error: ' .. tostring(line))
end

function H.mode()
  return H.lua('return vim.api.nvim_get_mode().mode')
end

--- Stops the child and reports success.
function H.pass()
  vim.fn.jobstop(chan)
  io.stdout:write(('PASS %s\n'):format(test_name))
  os.exit(0)
end

return H
