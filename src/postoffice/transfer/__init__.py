"""Mail moved in and out as files (mbox, Maildir): `postoffice export`, and the settings page's
export and import."""
