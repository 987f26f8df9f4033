-- wrk script for benches/src/bin/webhooks.rs: POSTs pre-signed webhook bodies (wrk's Lua
-- cannot compute HMACs) read from the file named in HERALD_WEBHOOK_BODIES, one
-- "<signature>\t<body>" per line, cycling through them.
local bodies = {}
local i = 0

function init(args)
  local f = assert(io.open(os.getenv("HERALD_WEBHOOK_BODIES"), "r"))
  for line in f:lines() do
    local sig, body = line:match("^([^\t]+)\t(.*)$")
    bodies[#bodies + 1] = { sig, body }
  end
  f:close()
end

request = function()
  i = i % #bodies + 1
  local b = bodies[i]
  return wrk.format("POST", "/webhook", {
    ["Content-Type"] = "application/json",
    ["X-Hub-Signature-256"] = b[1],
  }, b[2])
end
