require ["fileinto", "include", "variables"];
global "seen";
set "seen" "${seen}lists ";
if header :contains "List-Id" "dev" {
	fileinto "Dev";
	return;
}
fileinto "Other";
