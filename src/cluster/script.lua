-- greymilter: one greylisting decision, atomically, for one tuple and its client network.
-- KEYS[1] tuple, KEYS[2] network (same hash tag, so the same Redis Cluster slot).
-- ARGV: now, delay, retry_window, whitelist_lifetime, auto_whitelist_after (0 = off),
--       forced (1 = a `greylist` list entry: skip the auto-whitelist), count_interval,
--       hint (the node's own first_seen of the tuple, 0 = none), hint_white (1 = the node
--       has it whitelisted). The hint is used only when Redis has no tuple: what a node
--       learnt while Redis was down or after Redis lost data is merged, not forgotten.
-- Tuple value: an integer, first_seen while pending, -first_seen once whitelisted, or
-- 'x': forgotten by an administrator (`admin.rs`): absent, and no node's hint may bring
-- it back before the tombstone expires (when any node's hint would have expired too).
-- Network value: "passes,last_counted,last_use" (last_use 0 = not whitelisted yet).
-- Expiry is absolute (EXAT from the node's `now`), so a call that reaches Redis late
-- (after a freeze) still expires where it should.
-- Returns {outcome, waited, remaining, junk, became}: outcome 0 new, 1 early, 2 retried,
-- 3 whitelisted, 4 auto-whitelisted network; junk = 1 tuple, 2 network, 3 both.
local now = tonumber(ARGV[1])
local delay = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local life = tonumber(ARGV[4])
local after = tonumber(ARGV[5])
local forced = ARGV[6] == '1'
local interval = tonumber(ARGV[7])
local hint = tonumber(ARGV[8])
local hint_white = ARGV[9] == '1'
local junk = 0

local function read(key, bit)
  local v = redis.pcall('GET', key)
  if type(v) == 'table' and v.err then
    junk = junk + bit
    redis.call('DEL', key)
    return nil
  end
  if v == false then return nil end
  return v
end

local net = nil
if after > 0 then
  local v = read(KEYS[2], 2)
  if v then
    local p, c, u = string.match(v, '^(%d+),(%d+),(%d+)$')
    if p then
      net = {tonumber(p), tonumber(c), tonumber(u)}
      local since = net[3] ~= 0 and net[3] or net[2]
      if now - since >= life then net = nil end
    else
      junk = junk + 2
    end
  end
  if net and net[3] ~= 0 and not forced then
    if now > net[3] then net[3] = now end
    redis.call('SET', KEYS[2], net[1] .. ',' .. net[2] .. ',' .. net[3], 'EXAT', net[3] + life)
    return {4, 0, 0, junk, 0}
  end
end

local t = nil
local v = read(KEYS[1], 1)
local forgotten = v == 'x'
if v and not forgotten then
  t = tonumber(v)
  if t == nil or t == 0 or t ~= math.floor(t) or math.abs(t) > 4294967295 then
    junk = junk + 1
    t = nil
  end
end

local absent = t == nil
if absent and not forgotten and hint > 0 and hint <= now then
  if hint_white then t = -hint else t = hint end
end

local outcome, waited, remaining = 0, 0, delay
if t and t < 0 then
  outcome, remaining = 3, 0
  if absent then
    redis.call('SET', KEYS[1], t, 'EXAT', now + life)
  else
    redis.call('EXPIREAT', KEYS[1], now + life, 'GT')
  end
elseif t then
  waited = now - t
  if waited < 0 then waited = 0 end
  if waited >= window then
    t = nil
    waited = 0
  elseif waited < delay then
    outcome, remaining = 1, delay - waited
    if absent then redis.call('SET', KEYS[1], t, 'EXAT', t + window) end
  else
    outcome, remaining = 2, 0
    redis.call('SET', KEYS[1], -t, 'EXAT', now + life)
  end
end
if outcome == 0 then
  redis.call('SET', KEYS[1], now, 'EXAT', now + window)
end

local became = 0
if after > 0 and outcome >= 2 then
  if not net then net = {0, 0, 0} end
  if net[1] == 0 or now - net[2] >= interval then
    net[1] = net[1] + 1
    net[2] = now
    if net[1] >= after and net[3] == 0 then
      net[3] = now
      became = 1
    end
    local since = net[3] ~= 0 and net[3] or net[2]
    redis.call('SET', KEYS[2], net[1] .. ',' .. net[2] .. ',' .. net[3], 'EXAT', since + life)
  end
end
return {outcome, waited, remaining, junk, became}
