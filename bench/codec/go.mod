module github.com/corral-iot/corral/bench/codec

go 1.26.8

require github.com/corral-iot/corral v0.0.0

require github.com/eclipse/paho.golang v0.23.0

replace github.com/corral-iot/corral => ../..
