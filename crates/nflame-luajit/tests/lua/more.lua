-- nflame's Lua workload for frame kinds: a tail call, a coroutine, a
-- builtin in interpreted code (string.format), an FFI call.
local ffi = require("ffi")
ffi.cdef[[ int getpid(void); ]]
local _M = {}

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
function _M.napper()
  for _ = 1, 3 do ngx.sleep(0.0005) end -- yields: nginx runs its event loop
  return "z"
end

-- Keep with_format interpreted, so string.format runs as a builtin frame.
jit.off(_M.with_format, true)

return _M
