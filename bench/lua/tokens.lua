-- wrk script for the management and usage benchmarks: every request picks a
-- random line of BENCH_TOKENS ("<org_id> <user_id> <access jwt>" per line)
-- and sends GET BENCH_PATH with {org} and {user} replaced, as that caller.
local lines = {}
local path = os.getenv("BENCH_PATH") or "/health"
local f = assert(io.open(os.getenv("BENCH_TOKENS"), "r"))
for l in f:lines() do
  local org, user, tok = l:match("^(%S+) (%S+) (%S+)$")
  if org then lines[#lines + 1] = {org, user, tok} end
end
f:close()
assert(#lines > 0, "no tokens")
math.randomseed(os.time())

request = function()
  local t = lines[math.random(#lines)]
  local p = path:gsub("{org}", t[1]):gsub("{user}", t[2])
  return wrk.format("GET", p, {["Authorization"] = "Bearer " .. t[3]})
end

-- non-2xx answers are counted by wrk itself ("Non-2xx or 3xx responses")
