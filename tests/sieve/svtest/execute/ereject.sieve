require "ereject";
ereject "No thanks.";
