# dmarc-quarantine.sieve: file mail that dmarc-milter quarantined into Junk.
#
# Install it as a global script that runs before the user's own scripts
# (sieve_before, see 90-dmarc-milter.conf), then compile it once as root:
#     sievec /etc/dovecot/sieve/dmarc-quarantine.sieve
# (the delivery process runs as the mail user and cannot write the .svbin).
#
# dmarc-milter marks quarantined mail in two ways, and this script honours
# both so that it keeps working when the marker header is switched off:
#   1. the marker header X-DMARC-Quarantine: yes (config key
#      actions.quarantine_header; incoming copies of it are always deleted by
#      the milter, so a sender cannot forge it past us);
#   2. our Authentication-Results header with dmarc=fail and
#      policy.dmarc=quarantine (RFC 8601 §2.3, §2.7.1). The milter deletes any
#      incoming Authentication-Results that carries our authserv-id (RFC 8601
#      §5), so only an A-R that starts with our authserv-id can be trusted.
#
# EDIT: replace mx.example.org below with your authserv-id (config key
# authserv_id, or the host name Postfix sends as macro j), dots escaped.
require ["fileinto", "mailbox", "regex"];

if anyof (
    header :is "X-DMARC-Quarantine" "yes",
    header :regex "Authentication-Results"
        "^[[:space:]]*mx\\.example\\.org([[:space:]]+[0-9]+)?[[:space:]]*;(.*[[:space:];])?dmarc=fail([[:space:];(].*)?[[:space:];]policy\\.dmarc=quarantine([[:space:];(]|$)"
) {
    fileinto :create "Junk";
    stop;
}
