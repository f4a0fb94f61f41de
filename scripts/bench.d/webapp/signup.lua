-- wrk script: POST /v1/user with a new e-mail address on every request.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  math.randomseed(os.time() + tid)
  prefix = string.format("%d-%d", tid, math.random(1, 1000000000))
  counter = 0
end
function request()
  counter = counter + 1
  local body = string.format(
    '{"email":"b%s-%d@bench.example.com","password":"bench-pass-1","first_name":"Bench","last_name":"Mark"}',
    prefix, counter)
  return wrk.format("POST", "/v1/user", { ["Content-Type"] = "application/json" }, body)
end
