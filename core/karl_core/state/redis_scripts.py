"""The Lua scripts that make the fleet's writes atomic. Each one reads and writes in a single step, so
two nodes placing one call, or a fenced node writing late, can never interleave with another writer.

Ownership is (owner, epoch). Epochs come from one counter (`<p>:epoch`): a pair is never handed out
twice, not even to the same node for a call-id used again later. A script that re-creates ownership
after Redis lost its data (restarted empty) also moves the counter past the epoch it re-creates.
"""

from __future__ import annotations

RELEASE = """
-- KEYS: call, node-calls of the owner, call state. ARGV: owner, epoch, call-id
local held = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
if held[1] == ARGV[1] and tonumber(held[2]) == tonumber(ARGV[2]) and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[3])
  return 1
end
return 0
"""
"""Undo a placement whose offer failed on every node: nothing outlives a call that never was."""

SAVE = """
-- KEYS: call, call state, node-calls of the writer, epoch counter, tombstone
-- ARGV: owner, epoch (0: not known yet), version, state (JSON), TTL (ms), call-id
local held = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
local epoch = tonumber(ARGV[2])
if not held[1] then
  if epoch == 0 then
    -- a call the writer created before anyone placed it: the write places it
    epoch = redis.call('INCR', KEYS[4])
  else
    local ended = redis.call('GET', KEYS[5])
    if ended and tonumber(ended) >= epoch then
      -- it ended at this epoch or a later one (failover moved it and its new owner ended it):
      -- never bring it back
      redis.call('SREM', KEYS[3], ARGV[6])
      return {'fenced', '', 0}
    end
    -- Redis lost the call (restarted empty, a promoted replica without the last writes, keys that
    -- expired): the writer re-asserts its ownership
    local counter = tonumber(redis.call('GET', KEYS[4]) or '0')
    if counter < epoch then redis.call('SET', KEYS[4], epoch) end
  end
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'epoch', epoch)
  redis.call('SADD', KEYS[3], ARGV[6])
elseif held[1] ~= ARGV[1] then
  return {'fenced', held[1], tonumber(held[2])}
elseif epoch == 0 then
  epoch = tonumber(held[2])  -- placed on the writer (by its earlier write): its epoch is the writer's
elseif tonumber(held[2]) ~= epoch then
  return {'fenced', held[1], tonumber(held[2])}
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local stored = redis.call('HMGET', KEYS[2], 'version', 'epoch')
if stored[1] and tonumber(stored[2]) == epoch and tonumber(stored[1]) >= tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
  return {'stale', ARGV[1], epoch}
end
redis.call('HSET', KEYS[2], 'version', ARGV[3], 'owner', ARGV[1], 'epoch', epoch, 'state', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {'saved', ARGV[1], epoch}
"""
"""Write a call's state if the writer holds the call at its epoch (or nobody does any more: Redis lost
it). Epoch 0 is a writer that does not know its epoch yet (the first write of a call it created on an
offer): it places the call itself, or adopts the epoch its own earlier write placed it at. Refused as
`fenced` when another owner or a newer epoch holds the call; `stale` when Redis has this version or a
newer one of the same epoch. Every verdict carries the (owner, epoch) it was made for."""

REMOVE = """
-- KEYS: call, call state, node-calls of the writer, tombstone
-- ARGV: owner, epoch, call-id, tombstone TTL (ms)
local held = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
local epoch = tonumber(ARGV[2])
if held[1] and (held[1] ~= ARGV[1] or (epoch ~= 0 and tonumber(held[2]) ~= epoch)) then
  -- the writer's index entry goes, unless the holder is the same node id (a newer boot of it)
  if held[1] ~= ARGV[1] then redis.call('SREM', KEYS[3], ARGV[3]) end
  return {'fenced', held[1], tonumber(held[2])}
end
if (not held[1]) and epoch ~= 0 then
  local ended = redis.call('GET', KEYS[4])
  if ended and tonumber(ended) > epoch then
    -- it ended on another node already (at a later epoch), which wrote its record
    redis.call('SREM', KEYS[3], ARGV[3])
    return {'fenced', '', 0}
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[3])
redis.call('SET', KEYS[4], tonumber(held[2] or ARGV[2]), 'PX', ARGV[4])
return {'removed', ARGV[1], tonumber(ARGV[2])}
"""
"""Forget an ended call, unless it has moved on to another owner (then only the writer's index), or
ended on another node already (its tombstone says so: `fenced` without a holder, so that no second
CDR is written). The removal leaves a tombstone with the call's epoch, so that a node that held the
call earlier, cut off meanwhile, never brings it back. Epoch 0 (a writer whose first write has not
come back) matches on the owner alone."""

TOUCH = """
-- KEYS: call, call state. ARGV: owner, epoch, TTL (ms)
local held = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
if held[1] == ARGV[1] and (tonumber(ARGV[2]) == 0 or tonumber(held[2]) == tonumber(ARGV[2])) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 1
end
if not held[1] then return 0 end
return -1
"""
"""Keep a live call's keys from expiring: 1 = renewed, 0 = absent (Redis lost it), -1 = fenced."""

RENEW_LEASE = """
-- KEYS: node key, members. ARGV: lease (JSON), TTL (ms), node id
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return previous
"""
"""Renew a lease and return the one it replaced (none: first start, an expired lease, or a Redis
that lost its data; another boot id: this node restarted)."""

LEAVE = """
-- KEYS: node key, members. ARGV: node id, boot id
local current = redis.call('GET', KEYS[1])
if current and string.find(current, ARGV[2], 1, true) == nil then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""
"""A node stopping cleanly leaves the fleet (unless a newer boot of it holds the lease already)."""

# -- failover (part 2 of the fleet) -----------------------------------------------------------------

SUSPECT = """
-- KEYS: suspects of the target. ARGV: reporter, 1 = cannot reach it / 0 = reaches it, TTL (ms)
if ARGV[2] == '1' then
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[1], ARGV[1], now[1] * 1000 + math.floor(now[2] / 1000))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""
"""A member says whether it reaches another one (its NG `ping`). Timestamps are Redis's clock, so
members whose clocks differ agree on what is recent."""

SUSPICIONS = """
-- KEYS: suspects of the target. ARGV: freshness (ms)
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local all = redis.call('HGETALL', KEYS[1])
local fresh = {}
for i = 1, #all, 2 do
  if ms - tonumber(all[i + 1]) <= tonumber(ARGV[1]) then table.insert(fresh, all[i]) end
end
return fresh
"""
"""The members that said lately that they cannot reach the target."""

LEAD = """
-- KEYS: leader, term counter. ARGV: controller id, TTL (ms)
local current = redis.call('GET', KEYS[1])
if current then
  local holder, term = string.match(current, '^(.*) (%d+)$')
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, holder, tonumber(term)}
  end
  return {0, holder or '', tonumber(term or '0')}
end
local term = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. term, 'PX', ARGV[2])
return {1, ARGV[1], term}
"""
"""Become or stay the leading failover controller. Returns (1 = leads / 0 = another leads, leader,
term). A new leader gets a new term; every action it takes names it, and is refused once it changed."""

ADOPT = """
-- KEYS: leader, call, call state, epoch counter, node-calls of the dead node, node-calls of the
-- target, adoptions of the target, lease of the dead node
-- ARGV: controller id, term, dead node, target, call-id, TTL (ms), 1 = only while its lease is gone
if redis.call('GET', KEYS[1]) ~= ARGV[1] .. ' ' .. ARGV[2] then return {'deposed', '', 0} end
local held = redis.call('HMGET', KEYS[2], 'owner', 'epoch')
if held[1] ~= ARGV[3] then
  redis.call('SREM', KEYS[5], ARGV[5])
  return {'moved', held[1] or '', tonumber(held[2] or '0')}
end
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[8]) == 1 then
  -- the node is back (it renews its lease before it takes its calls back): its calls stay
  return {'moved', held[1], tonumber(held[2])}
end
local epoch = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[2], 'owner', ARGV[4], 'epoch', epoch, 'moved_from', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[3], 'owner', ARGV[4], 'epoch', epoch)
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
end
redis.call('SREM', KEYS[5], ARGV[5])
redis.call('SADD', KEYS[6], ARGV[5])
redis.call('RPUSH', KEYS[7], ARGV[5])
return {'adopted', ARGV[4], epoch}
"""
"""Move a dead node's call to a survivor with the next fleet epoch (noting where from), and tell the
survivor (its adoption list). Only while the caller leads with that term, only from the dead node, and
(for a failed node, not one handing its calls over) only while its lease is gone: a node that came
back keeps its calls, and a call that moved meanwhile stays where it is."""

ABANDON = """
-- KEYS: leader, call, call state, node-calls of the dead node, tombstone, epoch counter, its lease,
--       the fleet's endings list
-- ARGV: controller id, term, dead node, call-id, tombstone TTL (ms), reason
if redis.call('GET', KEYS[1]) ~= ARGV[1] .. ' ' .. ARGV[2] then return {'deposed', ''} end
local held = redis.call('HMGET', KEYS[2], 'owner', 'epoch')
if held[1] ~= ARGV[3] then
  redis.call('SREM', KEYS[4], ARGV[4])
  return {'moved', held[1] or ''}
end
if redis.call('EXISTS', KEYS[7]) == 1 then
  return {'moved', held[1]}  -- the node is back: the call stays with it
end
local state = redis.call('HGET', KEYS[3], 'state') or ''
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[4])
-- a new epoch in the tombstone: the old owner, should it only have stalled, is fenced even in REMOVE
redis.call('SET', KEYS[5], redis.call('INCR', KEYS[6]), 'PX', ARGV[5])
-- in the same step, the record of how it ended: a live node writes its CDR and sends its event
local ending = {call_id = ARGV[4], node = ARGV[3], reason = ARGV[6], state = state}
redis.call('RPUSH', KEYS[8], cjson.encode(ending))
return {'ended', state}
"""
"""End a dead node's call that no survivor has room for (never half-adopted): its keys go, and the
record of its end (its last state, why) goes onto the fleet's endings list in the same step, so that
no failure between the two can lose it. The state also comes back, for the controller's log."""

RETIRE = """
-- KEYS: node key, members, suspects of the node, node-calls of the node. ARGV: node id
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SCARD', KEYS[4]) > 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""
"""Take a dead node whose calls all moved off the members, so it no longer counts in the majority (it
registers again if it comes back). Not while it has a lease or calls."""

RECLAIM = """
-- KEYS: call, call state, epoch counter. ARGV: node id
local held = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
if held[1] ~= ARGV[1] then return {0, held[1] or '', tonumber(held[2] or '0')} end
local epoch = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'epoch', epoch)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'epoch', epoch) end
return {1, ARGV[1], epoch}
"""
"""A node restarted on its host takes back a call it still holds (not moved by failover meanwhile),
at a new epoch: whatever its earlier run might still write is fenced. Returns (1 = taken back / 0 =
another node holds it, holder, epoch)."""

RESIGN = """
-- KEYS: leader. ARGV: controller id
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
"""A controller stopping cleanly gives up the lead at once (another one takes it at its next tick)."""
