-- wrk script for benches/src/bin/sim.rs: template sends, each to a distinct recipient with a
-- distinct callback id (so the simulator's pair-rate limit never triggers and its oracle can
-- count duplicates), and counts the 200s.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id
  ok = 0
end

request = function()
  counter = counter + 1
  local n = thread_id * 100000000 + counter
  local body = string.format(
    '{"messaging_product":"whatsapp","recipient_type":"individual","to":"%d","biz_opaque_callback_data":"hrld:bench:%d","type":"template","template":{"name":"order_update","language":{"code":"en_US"},"components":[{"type":"body","parameters":[{"type":"text","text":"Customer %d"}]}]}}',
    447700000000 + n, n, n)
  return wrk.format("POST", "/v21.0/106540352242922/messages", {
    ["Authorization"] = "Bearer sim-access-token",
    ["Content-Type"] = "application/json",
  }, body)
end

response = function(status, headers, body)
  if status == 200 then ok = ok + 1 end
end

done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("ok") end
  io.write(string.format("wrk: %d requests answered 200\n", total))
end
