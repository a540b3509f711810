require ["editheader", "variables"];
set "name" "X Field";
addheader "${name}" "value";
