# cmake -DIN=file -DOUT=header -DNAME=symbol -P embed_text.cmake: the file's
# bytes as a NUL-terminated C array, so that a page ships inside the program
# with no build step of its own.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* generated from ${IN} by cmake/embed_text.cmake */\nstatic const char ${NAME}[] = {\n${body}0x00};\n")
