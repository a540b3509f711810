require ["regex", "comparator-i;ascii-numeric"];
if header :regex "subject" "(unclosed" { keep; }
if header :regex "subject" "(?i)perl" { keep; }
if header :regex :comparator "i;ascii-numeric" "subject" "1" { keep; }
