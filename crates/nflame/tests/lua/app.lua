-- nflame's Lua workload for `nflame record` on nginx + LuaJIT: functions of
-- known relative cost (compute_a does twice the work of compute_b), and one
-- of each frame kind: a tail call, a coroutine, an FFI call, a builtin
-- (string.format), an ngx API call.
local ffi = require("ffi")
ffi.cdef[[ int getpid(void); ]]
local _M = {}

function _M.compute_a(n)
  local s = 0
  for i = 1, 2 * n do
    s = s + (i % 7) * 3
  end
  return s
end

function _M.compute_b(n)
  local s = 0
  for i = 1, n do
    s = s + (i % 5) * 2
  end
  return s
end

function _M.handler(n)
  return _M.compute_a(n) + _M.compute_b(n)
end

local function leaf_tail(n)
  local s = 0
  for i = 1, n do s = s + (i % 3) end
  return s
end

function _M.tail_caller(n)
  return leaf_tail(n) -- a tail call: leaf_tail's frame replaces this one
end

function _M.in_coroutine(n)
  local co = coroutine.wrap(function()
    local s = 0
    for i = 1, n do s = s + (i % 11) end
    coroutine.yield(s)
  end)
  return co()
end

function _M.with_ffi(n)
  local s = 0
  for i = 1, n do s = s + ffi.C.getpid() % 2 end
  return s
end

function _M.with_format(n)
  local t = {}
  for i = 1, n do t[#t + 1] = string.format("%d:%x", i, i) end
  return #t
end

function _M.with_ngx(n)
  local h
  for i = 1, n do h = ngx.md5(i) end
  return h
end

-- Keep with_format interpreted, so string.format runs as a builtin frame.
jit.off(_M.with_format, true)

return _M
