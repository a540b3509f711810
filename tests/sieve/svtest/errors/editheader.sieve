require "editheader";
addheader "X Field" "value";
deleteheader "X-Field:";
