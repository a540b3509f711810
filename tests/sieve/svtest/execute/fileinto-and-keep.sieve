require ["fileinto", "imap4flags"];
addflag "$Seen-By-Filter";
fileinto "Lists";
keep;
