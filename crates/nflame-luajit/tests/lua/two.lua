-- Upstream luajit workload: two hot functions, work_a twice the cost of
-- work_b, for the number of seconds given as the first argument.
local function work_a(n)
  local s = 0
  for i = 1, n do s = s + (i % 7) * 3 end
  return s
end

local function work_b(n)
  local s = 0
  for i = 1, n do s = s + (i % 5) * 2 end
  return s
end

local function driver(secs)
  local t0 = os.clock()
  local acc = 0
  io.stdout:write("ready\n")
  io.stdout:flush()
  while os.clock() - t0 < secs do
    acc = acc + work_a(200000)
    acc = acc + work_b(100000)
  end
  return acc
end

driver(tonumber(arg[1]) or 5)
