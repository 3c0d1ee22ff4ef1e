--- :WellspringInstall puts a release tarball (the layout scripts/dist.sh makes, with a stripped
--- copy of the real binary) into a plugin root of the test's own ($WELLSPRING_NVIM_ROOT): from
--- dist/ of the checkout without an argument, checked against its .sha256, or from a path or an
--- unpacked folder. A wrong checksum, a broken tarball or a binary that does not run leaves the
--- previous bin/ as it was. With no `wellspring` on PATH, the LSP config runs the installed
--- binary and :checkhealth says :WellspringInstall put it there.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')

local function sh(argv, opts)
  local res = vim.system(argv, vim.tbl_extend('force', { text = true }, opts or {})):wait()
  H.check(res.code == 0, ('%s failed: %s'):format(table.concat(argv, ' '), res.stderr or ''))
  return res
end

local version = vim.trim(sh({ H.bin, '--version' }).stdout)
local name = 'wellspring-' .. version:match('^wellspring (%S+)') .. '-linux-x86_64'
local tmp = vim.fn.tempname()
local repo = tmp .. '/repo'
local root = repo .. '/editors/nvim'
local stage = tmp .. '/stage'
vim.fn.mkdir(root, 'p')
vim.fn.mkdir(repo .. '/dist', 'p')

-- A folder with the release's files. The debug binary links llama.cpp statically, so the
-- libraries are placeholders; stripping it keeps the tarball small.
local function make_build(dir)
  vim.fn.mkdir(dir, 'p')
  if vim.fn.executable('strip') == 1 then
    sh({ 'strip', '-o', dir .. '/wellspring', H.bin })
  else
    sh({ 'cp', H.bin, dir .. '/wellspring' })
  end
  for _, lib in ipairs({ 'libllama.so.0', 'libggml.so.0', 'libggml-base.so.0', 'libggml-cpu-x64.so', 'libgomp.so.1' }) do
    vim.fn.writefile({ 'placeholder' }, dir .. '/' .. lib)
  end
  vim.fn.writefile({ '# Wellspring' }, dir .. '/README.md')
end

local function make_tarball(parent, top, tarball)
  sh({ 'tar', '-cJf', tarball, '-C', parent, top }, { env = { XZ_OPT = '-0' } })
end

local function write_checksum(tarball, sum)
  vim.fn.writefile({ sum .. '  ' .. vim.fs.basename(tarball) }, tarball .. '.sha256')
end

make_build(stage .. '/' .. name)
local good = repo .. '/dist/' .. name .. '.tar.xz'
make_tarball(stage, name, good)
write_checksum(good, sh({ 'sha256sum', good }).stdout:match('^(%x+)'))

local bad_sum = tmp .. '/bad/' .. name .. '.tar.xz'
vim.fn.mkdir(tmp .. '/bad', 'p')
sh({ 'cp', good, bad_sum })
write_checksum(bad_sum, string.rep('0', 64))

local no_sum = tmp .. '/nosum/' .. name .. '.tar.xz'
vim.fn.mkdir(tmp .. '/nosum', 'p')
sh({ 'cp', good, no_sum })

local broken = tmp .. '/broken/wellspring-0.0.1-linux-x86_64.tar.xz'
vim.fn.mkdir(tmp .. '/broken', 'p')
vim.fn.writefile({ 'this is not xz' }, broken)

-- A tarball whose binary cannot run.
local dead_top = 'wellspring-0.0.2-linux-x86_64'
vim.fn.mkdir(tmp .. '/dead-stage/' .. dead_top, 'p')
vim.fn.writefile({ '#!/bin/sh', 'echo "cannot load libllama.so.0" >&2', 'exit 3' }, tmp .. '/dead-stage/' .. dead_top .. '/wellspring')
vim.fn.setfperm(tmp .. '/dead-stage/' .. dead_top .. '/wellspring', 'rwxr-xr-x')
local dead = tmp .. '/dead/' .. dead_top .. '.tar.xz'
vim.fn.mkdir(tmp .. '/dead', 'p')
make_tarball(tmp .. '/dead-stage', dead_top, dead)

-- PATH without any `wellspring`, so the plugin has to find the installed one.
local path_dirs = vim.tbl_filter(function(dir)
  return dir ~= '' and vim.fn.executable(dir .. '/wellspring') == 0
end, vim.split(os.getenv('PATH') or '', ':', { plain = true }))

H.start('install', { ['main.py'] = 'x = 1\n' }, {
  find_binary = true,
  env = { WELLSPRING_NVIM_ROOT = root, PATH = table.concat(path_dirs, ':') },
})
H.lua([[
  _G.notes = {}
  vim.notify = function(msg, level) table.insert(notes, { msg = msg, level = level }) end
]])

local function health()
  H.lua('vim.cmd("checkhealth wellspring")')
  local report = H.buffer_text()
  H.lua('vim.cmd("bwipeout!")')
  return report
end

local function wait_note(pattern, level)
  local note = H.wait(('a message with %q'):format(pattern), function()
    return H.lua(
      [[
      for _, note in ipairs(notes) do
        if note.msg:find(..., 1, true) then return note end
      end
    ]],
      pattern
    )
  end, H.timeout_ms)
  H.eq(level, note.level, 'level of ' .. vim.inspect(note.msg))
  H.lua('notes = {}')
  return note
end

local function root_entries()
  local entries = {}
  for entry in vim.fs.dir(root) do
    entries[#entries + 1] = entry
  end
  table.sort(entries)
  return entries
end

local marker = root .. '/bin/MARKER'
local function expect_untouched(what)
  H.check(vim.fn.filereadable(marker) == 1, 'bin/ changed after ' .. what)
  H.eq({ 'bin' }, root_entries(), 'plugin root after ' .. what)
end

-- 1. Nothing installed: nothing resolves, and :checkhealth says how to install.
H.eq(nil, H.lua('return require("wellspring.binary").resolve()'), 'binary before installing')
local report = health()
H.check(report:find('ERROR no wellspring binary', 1, true), 'checkhealth did not report the missing binary:\n' .. report)
H.check(report:find(':WellspringInstall', 1, true), 'checkhealth did not name :WellspringInstall:\n' .. report)
H.check(report:find('missing: binary', 1, true), 'checkhealth did not list the binary as missing:\n' .. report)

-- 2. Without an argument, the tarball in dist/ of the checkout, checked against its .sha256.
H.lua('vim.cmd.WellspringInstall()')
wait_note(('installed %s at %s/bin/wellspring (checksum verified)'):format(version, root), vim.log.levels.INFO)
H.eq({ 'bin' }, root_entries(), 'plugin root after installing')
for _, file in ipairs({ 'wellspring', 'libllama.so.0', 'libggml-cpu-x64.so', 'libgomp.so.1', 'README.md' }) do
  H.check(vim.uv.fs_stat(root .. '/bin/' .. file), 'bin/ lacks ' .. file)
end
H.eq(version, vim.trim(sh({ root .. '/bin/wellspring', '--version' }).stdout), 'installed binary')
H.eq(
  { path = root .. '/bin/wellspring', source = 'installed' },
  H.lua('return require("wellspring.binary").resolve()'),
  'binary after installing'
)
H.check(H.lua('return vim.lsp.config.wellspring.cmd == require("wellspring.binary").cmd'), 'the LSP config does not find the binary itself')

-- 3. A wrong checksum, a broken tarball and a binary that does not run change nothing.
vim.fn.writefile({ 'the previous install' }, marker)
H.lua('vim.cmd.WellspringInstall(...)', bad_sum)
wait_note('checksum mismatch', vim.log.levels.ERROR)
expect_untouched('a wrong checksum')
H.lua('vim.cmd.WellspringInstall(...)', broken)
wait_note('cannot unpack', vim.log.levels.ERROR)
expect_untouched('a broken tarball')
H.lua('vim.cmd.WellspringInstall(...)', dead)
wait_note('`wellspring --version` failed: cannot load libllama.so.0', vim.log.levels.ERROR)
expect_untouched('a binary that does not run')

-- 4. From Lua (as a lazy.nvim build step), blocking: an unpacked folder, then a tarball without
--    a .sha256 beside it. Each replaces bin/ whole.
local installed = H.lua('return { require("wellspring.install").install(...) }', stage .. '/' .. name)
H.eq({ root .. '/bin/wellspring' }, installed, 'install() from a folder')
wait_note('installed ' .. version, vim.log.levels.INFO)
H.check(vim.fn.filereadable(marker) == 0, 'bin/ was not replaced by the install from a folder')
H.eq({ 'bin' }, root_entries(), 'plugin root after installing from a folder')
installed = H.lua('return { require("wellspring.install").install(...) }', no_sum)
H.eq({ root .. '/bin/wellspring' }, installed, 'install() from a tarball without a checksum')
local note = wait_note('installed ' .. version, vim.log.levels.INFO)
H.check(not note.msg:find('checksum', 1, true), 'a tarball without .sha256 was reported as verified: ' .. note.msg)

-- 5. :checkhealth names the installed binary and where it came from.
report = health()
local expected = ('OK %s (%s/bin/wellspring), installed in %s/bin by :WellspringInstall'):format(version, root, root)
H.check(report:find(expected, 1, true), 'checkhealth did not report the installed binary:\n' .. report)

-- 6. Opening a file starts the installed binary (nothing else is on PATH).
H.edit('main.py')
local info = H.lua([[
  local client = vim.lsp.get_clients({ bufnr = 0, name = 'wellspring' })[1]
  local response = client:request_sync('wellspring/serverInfo', nil, 10000)
  return response and response.result
]])
H.check(info and info.version == version:match('^wellspring (%S+)'), 'serverInfo of the installed server: ' .. vim.inspect(info))
if info.binary then
  H.eq(root .. '/bin/wellspring', info.binary, 'serverInfo.binary')
end

-- 7. Without an argument outside a checkout, or in one without a tarball, the error says how
--    to get one.
local function install_error(plugin_root)
  return H.lua(
    [[
    vim.env.WELLSPRING_NVIM_ROOT = ...
    return select(2, require('wellspring.install').install())
  ]],
    plugin_root
  )
end
local err = install_error(tmp .. '/elsewhere/nvim')
H.check(err and err:find('scripts/dist.sh', 1, true), 'error outside a checkout: ' .. tostring(err))
H.check(err:find('linux-x86_64.tar.xz', 1, true), 'error outside a checkout: ' .. err)
err = install_error(tmp .. '/empty/editors/nvim')
H.check(err and err:find(tmp .. '/empty/dist', 1, true), 'error in a checkout without dist/: ' .. tostring(err))
H.check(err:find('scripts/dist.sh', 1, true), 'error in a checkout without dist/: ' .. err)

H.pass()
