-- Sendmail's miltertest (Debian package `miltertest`) against enforcer's milter, without an MTA.
-- Run by tests/tests/milter_postfix.rs (`miltertest_scripts_exercise_the_protocol`) with:
--   MILTER  the milter socket, e.g. inet:8895@127.0.0.1
--   IP      an address the daemon's schedule blocks outright once it has Exchange 2013 evidence
--   OTHER   an address the daemon knows nothing about
-- Every failure raises an error, so miltertest exits non-zero (it prints no message of its own: the
-- last `mt.echo` line shows how far the script got).

local EX2013 = "from EX01.sender.example (10.1.2.3) by EX02.sender.example (" .. IP ..
	") with Microsoft SMTP Server (TLS) id 15.0.1497.2; Tue, 1 Dec 2026 10:11:12 +0000"

local function check(err, what)
	if err ~= nil then
		error(what .. ": " .. tostring(err))
	end
end

local function expect(conn, reply, what)
	local got = mt.getreply(conn)
	if got ~= reply then
		error(what .. ": expected reply " .. string.char(reply) .. ", got " .. tostring(got))
	end
end

local function open()
	local conn = mt.connect(MILTER, 20, 0.25)
	if conn == nil then
		error("cannot connect to " .. MILTER)
	end
	check(mt.negotiate(conn, nil, nil, nil), "negotiate")
	return conn
end

-- 1. Negotiation: the milter asks to skip the stages it does not need and never skips MAIL.
local conn = open()
for _, opt in ipairs({ SMFIP_NOBODY, SMFIP_NORCPT, SMFIP_NODATA, SMFIP_NOUNKNOWN }) do
	if not mt.test_option(conn, opt) then
		error("stage not skipped: option " .. opt)
	end
end
if mt.test_option(conn, SMFIP_NOMAIL) or mt.test_option(conn, SMFIP_NOHDRS) then
	error("MAIL and the headers are the stages the milter needs")
end
mt.echo("negotiation: skips body, recipients, DATA and unknown commands")

-- 2. A whole message from IP carrying the Exchange 2013 field: the first message of an unknown
--    sender always goes on (its evidence arrives with its headers, after MAIL). Each stage is
--    preceded by the macros Sendmail defines for it (sendmail.cf's Milter.macros.* defaults), as
--    Sendmail sends them: the milter reads its address from the connect data, not from a macro.
check(mt.macro(conn, SMFIC_CONNECT, "j", "mx.enforcer.test", "_", "EX02.sender.example [" .. IP .. "]",
	"{daemon_name}", "MTA", "{if_name}", "mx.enforcer.test", "{if_addr}", "10.200.0.1"), "connect macros")
check(mt.conninfo(conn, "EX02.sender.example", IP), "conninfo")
check(mt.macro(conn, SMFIC_HELO, "{tls_version}", "TLSv1.3", "{cipher}", "TLS_AES_256_GCM_SHA384",
	"{cipher_bits}", "256", "{cert_subject}", "CN=EX02.sender.example", "{cert_issuer}", "CN=CA"), "helo macros")
check(mt.helo(conn, "EX02.sender.example"), "helo")
check(mt.macro(conn, SMFIC_MAIL, "i", "4ABC123", "{auth_type}", "PLAIN", "{auth_authen}", "a",
	"{mail_mailer}", "esmtp", "{mail_host}", "sender.example", "{mail_addr}", "a@sender.example"), "mail macros")
check(mt.mailfrom(conn, "<a@sender.example>"), "mailfrom")
expect(conn, SMFIR_CONTINUE, "MAIL of an unknown sender")
-- Recipients and the body were negotiated away: miltertest refuses (raises) to send them.
if pcall(mt.rcptto, conn, "<user@enforcer.test>") then
	error("RCPT was sent although the milter asked to skip it")
end
check(mt.header(conn, "Received", EX2013), "header")
check(mt.header(conn, "Subject", "miltertest"), "header")
check(mt.eoh(conn), "eoh")
if pcall(mt.bodystring, conn, "hello\r\n") then
	error("the body was sent although the milter asked to skip it")
end
check(mt.eom(conn), "eom")
expect(conn, SMFIR_CONTINUE, "end of message")
mt.echo("first message of an unknown sender went on")

-- 3. An aborted message, then a second message on the same connection: still answered.
check(mt.mailfrom(conn, "<b@sender.example>"), "mailfrom")
check(mt.abort(conn), "abort")
check(mt.disconnect(conn), "disconnect")

-- 4. The evidence reaches the engine without the MTA waiting: poll (bounded) until MAIL from IP is
--    refused with a reply code (the schedule blocks the sender outright).
local refused = false
for i = 1, 60 do
	local c = open()
	check(mt.conninfo(c, "EX02.sender.example", IP), "conninfo")
	check(mt.helo(c, "EX02.sender.example"), "helo")
	check(mt.mailfrom(c, "<a@sender.example>"), "mailfrom")
	local r = mt.getreply(c)
	check(mt.disconnect(c), "disconnect")
	if r == SMFIR_REPLYCODE then
		refused = true
		break
	end
	if r ~= SMFIR_CONTINUE then
		error("MAIL answered " .. tostring(r))
	end
	mt.sleep(0.25)
end
if not refused then
	error("MAIL from " .. IP .. " was never refused after its Exchange 2013 evidence")
end
mt.echo("blocked sender refused at MAIL with a reply code")

-- 5. The same sender as an IPv4-mapped IPv6 address is the same sender.
conn = open()
check(mt.conninfo(conn, "EX02.sender.example", "::ffff:" .. IP), "conninfo")
check(mt.mailfrom(conn, "<a@sender.example>"), "mailfrom")
expect(conn, SMFIR_REPLYCODE, "MAIL from the IPv4-mapped address")
check(mt.disconnect(conn), "disconnect")

-- 6. An unknown sender and an unknown address family go on.
conn = open()
check(mt.conninfo(conn, "other.example", OTHER), "conninfo")
check(mt.mailfrom(conn, "<a@other.example>"), "mailfrom")
expect(conn, SMFIR_CONTINUE, "MAIL from an unknown sender")
check(mt.eom(conn), "eom")
expect(conn, SMFIR_CONTINUE, "end of message")
check(mt.disconnect(conn), "disconnect")
mt.echo("unknown sender went on")

conn = open()
check(mt.conninfo(conn, "localhost", "unspec"), "conninfo")
check(mt.mailfrom(conn, "<a@local>"), "mailfrom")
expect(conn, SMFIR_CONTINUE, "MAIL from an unknown family")
check(mt.disconnect(conn, false), "abrupt disconnect")

mt.echo("miltertest: all checks passed")
