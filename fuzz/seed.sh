#!/bin/sh
# Writes a few valid example inputs into corpus/<target>/ so the fuzzers
# start from real sessions instead of from nothing. Safe to run again.
set -eu
cd "$(dirname "$0")"
seed() { mkdir -p "corpus/$1"; printf "$3" > "corpus/$1/seed-$2"; }

# smtp_session: first byte = mode (0 MX, 1 submission, 2 submissions; +4 = STARTTLS offered).
seed smtp_session data '\000EHLO x\r\nMAIL FROM:<u@example.org>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<l@example.org>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n'
seed smtp_session bdat '\002EHLO x\r\nAUTH PLAIN AHUAcA==\r\nMAIL FROM:<u@example.org> SIZE=100 BODY=BINARYMIME\r\nRCPT TO:<x@elsewhere.test>\r\nBDAT 5\r\nhelloBDAT 3 LAST\r\nabcQUIT\r\n'
seed smtp_session login '\002EHLO x\r\nAUTH LOGIN\r\ndQ==\r\ncA==\r\nMAIL FROM:<u@example.org>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n.\r\n'
seed smtp_session starttls '\004EHLO x\r\nSTARTTLS\r\nEHLO y\r\nAUTH PLAIN AHUAcA==\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\nx\r\n.\r\n'
seed smtp_parsers data '\003\005\001\000\007\011\002\004Subject: x\r\n\r\n.hi\r\nbare\nlf\r\r\n.\r\nMAIL FROM:<a@b> SIZE=12\r\n'

# pop3_session: first byte = flags (1 TLS, 2 loopback, 4 STLS offered, 8 deletes fail);
# bytes up to the first NUL = message 3.
seed pop3_session retr '\002Subject: x\r\n\r\n.dot\r\nbare\nend\000USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nUIDL 1\r\nRETR 3\r\nTOP 3 1\r\nRETR 2\r\nDELE 1\r\nRSET\r\nDELE 2\r\nQUIT\r\n'
seed pop3_session stls '\004\000CAPA\r\nSTLS\r\nCAPA\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nLIST 3\r\nTOP 3 0\r\nQUIT\r\n'
seed pop3_parsers top '\002\040\003\005\001\007Subject: x\r\n\r\nl1\r\n.l2\nl3'

seed client_reply ehlo '\003\001\007\002250-mx.example.org Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n'
seed client_stuffing msg '\003\001\007\002Subject: x\r\n\r\n.dot\rbare cr\nbare lf\r\n..\r\n.'
seed client_downgrade mime '\000MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\ncaf\303\251 = ok\r\n--b--\r\n'
seed srs_reverse fwd '\000\000\000\000\000\000\000\000user@example.com'
seed directory_names match 'sales-*@example.org\000sales-eu@example.org'
seed config_parse basic 'hostname = "mx.example.org"\ndomains = ["example.org"]\n[limits]\nmax_message_size = 1000\n'
# imap_command: byte 0 = mode (0 before login, 1 after, 2 AUTHENTICATE data, 3 IDLE),
# byte 1 = read size - 1.
seed imap_command login '\000\007a LOGIN alice {6}\r\nsecret\r\nb CAPABILITY\r\nc AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\nd STARTTLS\r\ne LOGOUT\r\n'
seed imap_command fetch '\001\077a SELECT INBOX\r\nb FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE BODYSTRUCTURE)\r\nc UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (Subject From)]<0.100> BODY[1.MIME] BINARY[2] BINARY.SIZE[1] BODY[TEXT] RFC822.HEADER MODSEQ) (CHANGEDSINCE 1)\r\nd FETCH 1 FULL\r\n'
seed imap_command search '\001\020a SEARCH CHARSET UTF-8 OR (FROM alice SUBJECT {4+}\r\ncaf\303\251) NOT (BODY hello TEXT world) SINCE 1-Jan-2020 HEADER X-Spam yes UID 1:* 2,4:*\r\nb UID SEARCH MODSEQ 5 LARGER 10 SMALLER 100000 KEYWORD $Junk UNSEEN SENTON 14-Nov-2023\r\n'
seed imap_command append '\001\003a APPEND INBOX (\\Seen) "14-Nov-2023 10:00:00 +0100" {11}\r\nSubject: x\r\nb IDLE\r\nDONE\r\nc STORE 1:3 +FLAGS.SILENT (\\Deleted)\r\nd UID EXPUNGE 1:3\r\n'
seed imap_command authdata '\002\000AGFsaWNlAHNlY3JldA==\r\n*\r\n'
seed imap_command idle '\003\000DONE\r\ndone\r\nDONE x\r\n'
echo "seeded corpus/"
