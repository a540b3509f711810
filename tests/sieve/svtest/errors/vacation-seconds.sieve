require "vacation";
vacation :seconds 60 "Too soon.";
