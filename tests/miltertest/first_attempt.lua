-- A first delivery attempt, as an MTA makes it: greymilter defers a new
-- (client, sender, recipient) tuple with a 4xx reply.
-- Run: miltertest -D sock=inet:10030@127.0.0.1 -s first_attempt.lua
--
-- Without DNS checks greymilter negotiates SMFIP_NOCONNECT and SMFIP_NOMAIL:
-- the MTA skips CONNECT and MAIL and sends the client and the sender as
-- macros with each RCPT. mt.conninfo() and mt.mailfrom() then raise a Lua
-- error ("negotiated SMFIP_NOCONNECT"), so this script asks first.

-- miltertest exits 1 without a word on error(): say what failed first.
local function fail(what)
  mt.echo("FAIL " .. what)
  error(what)
end

if sock == nil then sock = "inet:10030@127.0.0.1" end
local client, name = "192.0.2.7", "[192.0.2.7]"   -- "[ip]": no verified name
local from, to = "alice@example.org", "bob@example.net"

local conn = mt.connect(sock, 40, 0.05)
if conn == nil then fail("cannot connect to " .. sock) end
if mt.negotiate(conn, nil, nil, nil) ~= nil then fail("negotiate") end

if mt.test_option(conn, SMFIP_NOCONNECT) then
  mt.echo("CONNECT skipped: the client goes with RCPT")
else
  if mt.conninfo(conn, name, client) ~= nil then fail("conninfo") end
  if mt.getreply(conn) ~= SMFIR_CONTINUE then fail("CONNECT not continued") end
end
if mt.test_option(conn, SMFIP_NOMAIL) then
  mt.echo("MAIL skipped: the sender goes with RCPT")
else
  mt.macro(conn, SMFIC_MAIL, "{mail_addr}", from)
  if mt.mailfrom(conn, "<" .. from .. ">") ~= nil then fail("mailfrom") end
  if mt.getreply(conn) ~= SMFIR_CONTINUE then fail("MAIL not continued") end
end

-- What Postfix and Sendmail send with RCPT (greymilter asks for these).
mt.macro(conn, SMFIC_RCPT, "{client_addr}", client, "{client_name}", name,
         "{mail_addr}", from, "i", "4QxyZ1")
if mt.rcptto(conn, "<" .. to .. ">") ~= nil then fail("rcptto") end
local reply = mt.getreply(conn)
if reply == SMFIR_REPLYCODE then
  mt.echo("RCPT TO:<" .. to .. ">: deferred (4xx), a new tuple")
elseif reply == SMFIR_CONTINUE then
  mt.echo("RCPT TO:<" .. to .. ">: passes")
else
  fail("unexpected reply '" .. string.char(math.floor(reply)) .. "'")
end
mt.disconnect(conn)
