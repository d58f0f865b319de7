-- Helpers shared by the greymilter miltertest scripts.
-- A failed error()/assert() is silent in miltertest: always echo first.

function fail(what)
  mt.echo("FAIL " .. what)
  error(what)
end

function check(conn, what, ...)
  local got = mt.getreply(conn)
  for _, want in ipairs({...}) do
    if got == want then return end
  end
  fail(what .. ": got reply '" .. string.char(math.floor(got)) .. "'")
end

-- sock: the -D sock=... definition, else inet:<port>@127.0.0.1
function socket_spec()
  if sock ~= nil then return sock end
  return "inet:" .. port .. "@127.0.0.1"
end

function open(ip, version, steps, actions)
  local conn = mt.connect(socket_spec(), 40, 0.05)
  if conn == nil then fail("connect " .. socket_spec()) end
  if mt.negotiate(conn, version, steps, actions) ~= nil then fail("negotiate") end
  mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.net", "{daemon_addr}", "192.0.2.1")
  if mt.conninfo(conn, "relay.example.org", ip) ~= nil then fail("conninfo") end
  -- CONNECT goes without a reply when the MTA offers NR_CONN (miltertest
  -- then reports CONTINUE); an MTA without it gets ACCEPT for no client IP.
  if ip == "unspec" and not mt.test_option(conn, SMFIP_NR_CONN) then
    check(conn, "CONNECT without client IP", SMFIR_ACCEPT)
  else
    check(conn, "CONNECT", SMFIR_CONTINUE)
  end
  return conn
end

function mail(conn, from)
  mt.macro(conn, SMFIC_MAIL, "{mail_addr}", from)
  if mt.mailfrom(conn, "<" .. from .. ">", "SIZE=2048") ~= nil then fail("mailfrom") end
  check(conn, "MAIL " .. from, SMFIR_CONTINUE)
end

function rcpt(conn, to)
  mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", to)
  if mt.rcptto(conn, "<" .. to .. ">") ~= nil then fail("rcptto") end
end
