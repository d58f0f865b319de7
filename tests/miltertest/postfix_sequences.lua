-- Odd but normal sequences from Postfix (milter-protocol.md section 11.3):
-- macros for disabled stages with no event after them, ABORT without a
-- transaction and twice in a row, several transactions on one connection,
-- MAIL without ABORT.
-- Run: miltertest -D port=10030 -D dir=tests/miltertest -s postfix_sequences.lua
dofile(dir .. "/common.lua")

local c = open("203.0.113.9")
mt.macro(c, SMFIC_HELO, "{tls_version}", "TLSv1.3")    -- NOHELO: no H follows
mt.abort(c)                                             -- no transaction open
mt.abort(c)
for round = 1, 3 do
  mail(c, "erin@example.org")
  rcpt(c, "frank@example.net")
  if round == 1 then
    check(c, "RCPT frank (new)", SMFIR_REPLYCODE)
  else
    check(c, "RCPT frank (known)", SMFIR_CONTINUE)
    mt.macro(c, string.byte("T"), "i", "4XcW2m1Kz8z9Qp")  -- NODATA: no T follows
    if mt.eom(c) ~= nil then fail("eom") end
    check(c, "EOM", SMFIR_CONTINUE)
  end
  mt.abort(c)
  mt.abort(c)
end
-- MAIL twice without ABORT: an implicit reset, both answered.
mail(c, "erin@example.org")
mail(c, "grace@example.org")
rcpt(c, "frank@example.net")
check(c, "RCPT frank from grace (new)", SMFIR_REPLYCODE)
mt.disconnect(c)
mt.echo("postfix sequences ok")
