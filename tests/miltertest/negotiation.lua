-- What greymilter asks for in OPTNEG (milter-protocol.md section 13):
-- no HELO, headers, EOH, body, UNKNOWN or DATA; CONNECT and MAIL without a
-- reply (NR_CONN, NR_MAIL) when offered, RCPT and EOM answered;
-- no actions but SETSYMLIST (X-Greylist header off in the test server).
-- Run: miltertest -D port=10030 -D dir=tests/miltertest -s negotiation.lua
dofile(dir .. "/common.lua")

local function want(conn, name, bit, expected)
  if mt.test_option(conn, bit) ~= expected then
    fail("option " .. name .. " should be " .. tostring(expected))
  end
end

local function want_action(conn, name, bit, expected)
  if mt.test_action(conn, bit) ~= expected then
    fail("action " .. name .. " should be " .. tostring(expected))
  end
end

-- v6 MTA, everything offered (the defaults).
local c = open("198.51.100.7")
want(c, "NOHELO", SMFIP_NOHELO, true)
want(c, "NOBODY", SMFIP_NOBODY, true)
want(c, "NOHDRS", SMFIP_NOHDRS, true)
want(c, "NOEOH", SMFIP_NOEOH, true)
want(c, "NOUNKNOWN", SMFIP_NOUNKNOWN, true)
want(c, "NODATA", SMFIP_NODATA, true)
want(c, "NOCONNECT", SMFIP_NOCONNECT, false)
want(c, "NOMAIL", SMFIP_NOMAIL, false)
want(c, "NORCPT", SMFIP_NORCPT, false)
want(c, "NR_CONN", SMFIP_NR_CONN, true)
want(c, "NR_MAIL", SMFIP_NR_MAIL, true)
want(c, "NR_HELO", SMFIP_NR_HELO, false)
want(c, "NR_RCPT", SMFIP_NR_RCPT, false)
want(c, "SKIP", SMFIP_SKIP, false)
want(c, "RCPT_REJ", SMFIP_RCPT_REJ, false)
want(c, "HDR_LEADSPC", SMFIP_HDR_LEADSPC, false)
want_action(c, "SETSYMLIST", SMFIF_SETSYMLIST, true)
want_action(c, "ADDHDRS", SMFIF_ADDHDRS, false)
want_action(c, "CHGBODY", SMFIF_CHGBODY, false)
mail(c, "alice@example.org")
rcpt(c, "dave@example.net")
check(c, "RCPT", SMFIR_REPLYCODE)
if mt.eom(c) ~= nil then fail("eom") end
check(c, "EOM", SMFIR_CONTINUE)
mt.disconnect(c)
mt.echo("v6 negotiation ok")

-- A version 2 MTA (Postfix milter_protocol = 2): steps 0x7F, actions 0x3F.
-- Argument order in the code: version, steps, actions.
c = open("198.51.100.8", 2, 0x7F, 0x3F)
want(c, "NOHELO", SMFIP_NOHELO, true)
want(c, "NOBODY", SMFIP_NOBODY, true)
want(c, "NOUNKNOWN (not offered)", SMFIP_NOUNKNOWN, false)
want(c, "NODATA (not offered)", SMFIP_NODATA, false)
want_action(c, "SETSYMLIST (not offered)", SMFIF_SETSYMLIST, false)
want(c, "NR_CONN (not offered)", SMFIP_NR_CONN, false)
mail(c, "alice@example.org")
rcpt(c, "dave@example.net")
check(c, "RCPT (v2)", SMFIR_REPLYCODE)
mt.disconnect(c)
mt.echo("v2 negotiation ok")
