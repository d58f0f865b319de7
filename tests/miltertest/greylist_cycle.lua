-- A new (client, sender, recipient) triplet is deferred at RCPT; the same
-- triplet passes on the next attempt (the test decider's "delay" is one
-- attempt, so no sleeping); EOM is answered; an IPv6 client is a new triplet.
-- Adapted from milter-protocol.md section 17.1.
-- Run: miltertest -D port=10030 -D dir=tests/miltertest -s greylist_cycle.lua
dofile(dir .. "/common.lua")

-- 1. first attempt: both recipients are new, both must be deferred
local c = open("198.51.100.7")
mail(c, "alice@example.org")
rcpt(c, "bob@example.net")
check(c, "RCPT bob (new)", SMFIR_REPLYCODE)
rcpt(c, "carol@example.net")
check(c, "RCPT carol (new)", SMFIR_REPLYCODE)
mt.abort(c)                       -- what the MTA sends when the client gives up
mt.disconnect(c)
mt.echo("first attempt deferred")

-- 2. retry: both pass with CONTINUE (never ACCEPT at RCPT)
c = open("198.51.100.7")
mail(c, "Alice@Example.ORG")      -- case is folded in the key
rcpt(c, "bob@example.net")
check(c, "RCPT bob (retry)", SMFIR_CONTINUE)
rcpt(c, "carol@example.net")
check(c, "RCPT carol (retry)", SMFIR_CONTINUE)
if mt.eom(c) ~= nil then fail("eom") end
check(c, "EOM", SMFIR_CONTINUE)
mt.disconnect(c)
mt.echo("retry passed")

-- 3. IPv6 client: a different triplet, deferred again, then passes
c = open("2001:db8::25")
mail(c, "alice@example.org")
rcpt(c, "bob@example.net")
check(c, "RCPT over IPv6", SMFIR_REPLYCODE)
rcpt(c, "bob@example.net")
check(c, "RCPT over IPv6 (retry)", SMFIR_CONTINUE)
mt.disconnect(c)
mt.echo("IPv6 client deferred, then passed")

-- 4. no client IP (family U): not greylisted; the recipient of a new
-- triplet passes at once
c = open("unspec")
mail(c, "nobody@example.org")
rcpt(c, "dave@example.net")
check(c, "RCPT without client IP", SMFIR_CONTINUE)
mt.disconnect(c)
mt.echo("unknown family accepted")
