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
seed srs_reverse fwd '\000\000\000\000\000\000\000\000user@example.com'
seed directory_names match 'sales-*@example.org\000sales-eu@example.org'
seed config_parse basic 'hostname = "mx.example.org"\ndomains = ["example.org"]\n[limits]\nmax_message_size = 1000\n'
echo "seeded corpus/"
