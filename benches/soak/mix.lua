-- wrk request mix for the soak: 4 of 5 requests hit one of 20 hot pages,
-- 1 of 5 asks for a page never asked before (a miss that gets stored).
-- With the script arguments `<run id> hits`, every request is a hit.
-- Deterministic: no randomness, so both workers see the same sequence.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
function request()
  n = n + 1
  if n % 5 == 0 and not hits_only then
    return wrk.format("GET", "/miss/" .. run .. "-" .. tid .. "-" .. n)
  end
  return wrk.format("GET", "/hit/" .. (n % 20))
end
function init(args)
  run = args[1] or "0"
  hits_only = args[2] == "hits"
end
