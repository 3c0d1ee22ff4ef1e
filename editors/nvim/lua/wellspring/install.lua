--- :WellspringInstall: puts the portable server (a release tarball made by scripts/dist.sh, or a
--- folder holding an unpacked one) into the plugin's own bin/, where binary.lua finds it.
--- It unpacks into a folder beside bin/, checks that `wellspring --version` runs there, and only
--- then renames that folder to bin/, so a failed install leaves the previous bin/ as it was.
local M = {}

local binary = require('wellspring.binary')

local TARBALL_GLOB = 'wellspring-*-linux-x86_64.tar.xz'

-- Coroutines of installs that run without blocking the editor (the user command's).
local async_installs = setmetatable({}, { __mode = 'k' })

--- Runs `argv` to its end: inside an asynchronous install by yielding until it exits, else by
--- waiting. A program that cannot start gives exit code -1.
---@return vim.SystemCompleted
local function run(argv, opts)
  opts = vim.tbl_extend('force', { text = true }, opts or {})
  local co = coroutine.running()
  if co and async_installs[co] then
    local ok, err = pcall(vim.system, argv, opts, function(res)
      vim.schedule(function()
        M._resume(co, res)
      end)
    end)
    if not ok then
      return { code = -1, signal = 0, stdout = '', stderr = tostring(err) }
    end
    return coroutine.yield()
  end
  local ok, res = pcall(function()
    return vim.system(argv, opts):wait()
  end)
  return ok and res or { code = -1, signal = 0, stdout = '', stderr = tostring(res) }
end

--- Resumes an asynchronous install; an error the install did not catch is shown, not lost.
function M._resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    vim.notify('Wellspring: install failed: ' .. tostring(err), vim.log.levels.ERROR)
  end
end

local function fail(message)
  error(message, 0)
end

local function output_of(res)
  local text = vim.trim((res.stderr or '') ~= '' and res.stderr or (res.stdout or ''))
  return text ~= '' and text or ('exit code ' .. res.code)
end

--- The newest release tarball in dist/ of the checkout this plugin lives in (editors/nvim).
---@return string
function M.default_source()
  local root = vim.uv.fs_realpath(binary.root()) or binary.root()
  local repo = vim.fn.fnamemodify(root, ':h:h')
  local get = 'pass the path of a release tarball (:WellspringInstall ~/Downloads/wellspring-VERSION-linux-x86_64.tar.xz) '
    .. 'or of a folder holding an unpacked one'
  if not root:match('/editors/nvim$') then
    fail(('no release tarball to install: %s; in a checkout of the repository, scripts/dist.sh makes one in dist/'):format(get))
  end
  local newest, newest_mtime = nil, -1
  for _, path in ipairs(vim.fn.glob(repo .. '/dist/' .. TARBALL_GLOB, true, true)) do
    local stat = vim.uv.fs_stat(path)
    local mtime = stat and (stat.mtime.sec + stat.mtime.nsec / 1e9) or 0
    if mtime > newest_mtime or (mtime == newest_mtime and path > newest) then
      newest, newest_mtime = path, mtime
    end
  end
  if not newest then
    fail(('no %s in %s/dist: run scripts/dist.sh in %s, or %s'):format(TARBALL_GLOB, repo, repo, get))
  end
  return newest
end

--- Checks the tarball against NAME.tar.xz.sha256 (sha256sum's format) when that file lies beside
--- it; returns whether it did.
local function verify_checksum(tarball)
  local sum_file = tarball .. '.sha256'
  if not vim.uv.fs_stat(sum_file) then
    return false
  end
  local expected = (vim.fn.readfile(sum_file, '', 1)[1] or ''):match('^(%x+)')
  if not expected or #expected ~= 64 then
    fail(('%s does not hold a sha256sum line'):format(sum_file))
  end
  local res = run({ 'sha256sum', tarball })
  local actual = res.code == 0 and res.stdout:match('^(%x+)')
  if not actual then
    fail(('cannot check %s: sha256sum: %s'):format(tarball, output_of(res)))
  end
  if actual:lower() ~= expected:lower() then
    fail(('checksum mismatch: %s says %s, the tarball is %s'):format(vim.fs.basename(sum_file), expected, actual))
  end
  return true
end

--- Puts the build from `source` into `temp` and returns the folder that holds its binary.
local function stage(source, temp)
  local stat = vim.uv.fs_stat(source)
  if not stat then
    fail(('%s does not exist'):format(source))
  end
  if stat.type == 'directory' then
    if vim.fn.executable(source .. '/wellspring') == 0 then
      fail(('%s holds no `wellspring` executable'):format(source))
    end
    local res = run({ 'cp', '-a', '--', source .. '/.', temp .. '/bin' })
    if res.code ~= 0 then
      fail(('cannot copy %s: %s'):format(source, output_of(res)))
    end
    return temp .. '/bin'
  end
  local res = run({ 'tar', '-xJf', source, '-C', temp })
  if res.code ~= 0 then
    fail(('cannot unpack %s: %s'):format(source, output_of(res)))
  end
  -- The release has one top folder, wellspring-VERSION-linux-x86_64/; a flat tarball also works.
  if vim.uv.fs_stat(temp .. '/wellspring') then
    return temp
  end
  for name, kind in vim.fs.dir(temp) do
    if kind == 'directory' and vim.uv.fs_stat(temp .. '/' .. name .. '/wellspring') then
      return temp .. '/' .. name
    end
  end
  fail(('%s holds no `wellspring` binary'):format(source))
end

--- The whole install; raises a message on failure. Returns the version line and the binary.
local function install(source, root, temp)
  local checked = false
  if vim.uv.fs_stat(source) and vim.fn.isdirectory(source) == 0 then
    checked = verify_checksum(source)
  end
  local staged = stage(source, temp)
  local res = run({ staged .. '/wellspring', '--version' }, { timeout = 60000 })
  local version = res.code == 0 and vim.trim(res.stdout or '')
  if not version or not version:match('^wellspring ') then
    fail(('the unpacked `wellspring --version` failed: %s'):format(output_of(res)))
  end
  -- Swap the folders: bin/ is either the old build or the new one, never part of either.
  local bin, old = root .. '/bin', temp .. '-old'
  local had_old = vim.uv.fs_stat(bin) ~= nil
  if had_old then
    local ok, err = vim.uv.fs_rename(bin, old)
    if not ok then
      fail(('cannot move the previous %s aside: %s'):format(bin, err))
    end
  end
  local ok, err = vim.uv.fs_rename(staged, bin)
  if not ok then
    if had_old then
      vim.uv.fs_rename(old, bin)
    end
    fail(('cannot move the new build to %s: %s'):format(bin, err))
  end
  vim.fn.delete(old, 'rf')
  return version, bin .. '/wellspring', checked
end

local function report(ok, version, path, checked)
  if not ok then
    return vim.notify('Wellspring: install failed: ' .. version, vim.log.levels.ERROR)
  end
  local lines = { ('Wellspring: installed %s at %s%s'):format(version, path, checked and ' (checksum verified)' or '') }
  local found = binary.resolve()
  if found and found.path ~= path then
    lines[#lines + 1] = ('`wellspring` on PATH (%s) comes first; remove it from PATH to use this one'):format(found.path)
  else
    lines[#lines + 1] = 'New servers use it (`:edit` starts one in this buffer); running ones keep their binary'
  end
  vim.notify(table.concat(lines, '\n'), vim.log.levels.INFO)
end

--- Installs the portable server into `<plugin root>/bin/`. `source` is a release tarball
--- (wellspring-VERSION-linux-x86_64.tar.xz, checked against a .sha256 file beside it when there
--- is one) or a folder holding an unpacked build; without it, the newest tarball in dist/ of the
--- checkout the plugin lives in. Blocks until done and returns the binary's path, or nil and the
--- reason; with `opts.async` it returns at once and `opts.on_done(path, err)` follows. Either way
--- the outcome is also shown with vim.notify. Usable as a lazy.nvim `build` function.
---@param source? string
---@param opts? { async?: boolean, on_done?: fun(path?: string, err?: string) }
---@return string? path, string? err
function M.install(source, opts)
  opts = opts or {}
  local outcome
  local function body()
    local root = binary.root()
    local ok, version, path, checked = pcall(function()
      local from = (source and source ~= '') and vim.fn.fnamemodify(vim.fs.normalize(source), ':p'):gsub('/$', '')
        or M.default_source()
      if opts.async then
        vim.notify(('Wellspring: installing from %s…'):format(from), vim.log.levels.INFO)
      end
      vim.fn.mkdir(root, 'p')
      local temp = ('%s/.bin-install-%d-%d'):format(root, vim.uv.os_getpid(), vim.uv.hrtime())
      vim.fn.mkdir(temp, 'p')
      local res = { pcall(install, from, root, temp) }
      vim.fn.delete(temp, 'rf')
      if not res[1] then
        error(res[2], 0)
      end
      return unpack(res, 2)
    end)
    report(ok, version, path, checked)
    outcome = ok and { path } or { nil, version }
    if opts.on_done then
      opts.on_done(unpack(outcome, 1, 2))
    end
  end
  if opts.async then
    local co = coroutine.create(body)
    async_installs[co] = true
    M._resume(co)
    return nil
  end
  body()
  return unpack(outcome, 1, 2)
end

return M
