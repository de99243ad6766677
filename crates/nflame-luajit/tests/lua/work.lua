-- nflame's Lua workload: functions of known relative cost (compute_a does
-- twice the work of compute_b), each with its own loop so that LuaJIT
-- compiles a trace inside each of them.
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
  local r = _M.compute_a(n) + _M.compute_b(n)
  return string.format("%d", r)
end

return _M
