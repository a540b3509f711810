require ["fileinto", "include", "variables"];
global "seen";
set "seen" "${seen}spam ";
