require ["vacation", "enotify", "fcc", "imap4flags", "mailbox"];
vacation :flags "\\Seen" "Away.";
notify :create "mailto:phone@example.net";
