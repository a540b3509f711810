require "ereject";
keep;
ereject "No thanks.";
